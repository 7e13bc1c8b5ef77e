"""The launchers' integer helpers agree with Triton's (which cost microseconds a call from Python)."""

from __future__ import annotations

import pytest

from fa_kernels.intmath import cdiv, next_pow2

triton = pytest.importorskip("triton")


@pytest.mark.parametrize("b", [1, 2, 3, 16, 64, 128])
def test_cdiv_is_tritons(b: int) -> None:
    assert [cdiv(a, b) for a in range(0, 400)] == [int(triton.cdiv(a, b)) for a in range(0, 400)]


def test_next_pow2_is_tritons() -> None:
    assert [next_pow2(n) for n in range(1, 5000)] == [int(triton.next_power_of_2(n)) for n in range(1, 5000)]
    assert next_pow2(0) == 1
