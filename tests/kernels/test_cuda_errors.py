"""The compiled ops' errors: torch's stable ABI carries them as RuntimeError, fa_kernels raises the
ValueError / TypeError that csrc/ops.cpp names in the message (the GPU tests call the real ops)."""

from __future__ import annotations

import pytest

from fa_kernels.cuda import _errors


def _op_raising(message: str):  # type: ignore[no-untyped-def]
    def op(*_args: object) -> None:
        raise RuntimeError(message)

    return op


@pytest.mark.parametrize(("message", "kind", "text"), [
    ("fa_kernels ValueError: x must be [4, 8], got float16 [4] on cuda:0", ValueError, "x must be [4, 8]"),
    ("fa_kernels TypeError: weight must be float32 or x's dtype BFloat16, got Half", TypeError, "weight must be"),
])
def test_tagged_errors_come_back_as_their_python_kind(message: str, kind: type[Exception], text: str) -> None:
    with pytest.raises(kind) as err:
        _errors.call(_op_raising(message), 1, 2)
    assert str(err.value).startswith(text) and type(err.value) is kind


def test_other_runtime_errors_pass_through_unchanged() -> None:
    with pytest.raises(RuntimeError, match="fa_kernels flash_fwd: an illegal memory access"):
        _errors.call(_op_raising("fa_kernels flash_fwd: an illegal memory access was encountered"))
    assert _errors.call(lambda a, b: a + b, 1, 2) == 3
