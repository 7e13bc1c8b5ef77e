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


@pytest.mark.gpu
def test_the_compiled_ops_raise_typed_errors_on_bad_arguments() -> None:
    torch = pytest.importorskip("torch")
    from fa_kernels import backend

    if backend.cuda_extension() is None:
        pytest.skip("fa_kernels._C is not built")
    ops = torch.ops.fa_kernels
    x = torch.randn(4, 8, device="cuda", dtype=torch.bfloat16)
    args = (1e-6, 0.0, 0, torch.bfloat16, torch.bfloat16, False, False)
    with pytest.raises(ValueError, match=r"x must be 2-D \[rows, hidden\], got BFloat16 \[8\] on cuda:0"):
        _errors.call(ops.rms_norm_fwd, x[0], None, None, *args)
    with pytest.raises(TypeError, match="weight must be float32 or x's dtype BFloat16, got Half"):
        _errors.call(ops.rms_norm_fwd, x, None, torch.ones(8, device="cuda", dtype=torch.float16), *args)
    y, *_ = _errors.call(ops.rms_norm_fwd, x, None, None, *args)  # and a good call still runs
    assert y.shape == x.shape and torch.isfinite(y).all()
    if hasattr(ops, "flash_fwd"):
        q = torch.randn(1, 64, 2, 96, device="cuda", dtype=torch.float16)
        with pytest.raises(ValueError, match="head_dim 96 has no CUDA kernel"):
            _errors.call(ops.flash_fwd, q, q, q, 0.1, False)
