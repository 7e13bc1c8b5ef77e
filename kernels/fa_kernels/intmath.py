"""Integer helpers for the launchers' host code. triton.cdiv and triton.next_power_of_2 are
constexpr_functions in Triton >= 3.6: from Python each call unwraps its arguments (a few microseconds),
and a decoding step makes several; these are the plain arithmetic."""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for b > 0."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << (n - 1).bit_length() if n > 1 else 1
