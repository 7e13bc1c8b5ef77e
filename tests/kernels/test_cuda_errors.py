"""The compiled ops' errors: a type error leaves the stable-ABI glue as a ValueError tagged
"fa_kernels TypeError: ", which fa_kernels raises as TypeError (the GPU tests call the real ops)."""

from __future__ import annotations

import pytest

from fa_kernels.cuda import _errors


def _op_raising(error: Exception):  # type: ignore[no-untyped-def]
    def op(*_args: object) -> None:
        raise error

    return op


def test_a_tagged_value_error_comes_back_as_a_type_error() -> None:
    error = ValueError("fa_kernels TypeError: weight must be float32 or x's dtype BFloat16, got Half")
    with pytest.raises(TypeError) as err:
        _errors.call(_op_raising(error), 1, 2)
    assert str(err.value) == "weight must be float32 or x's dtype BFloat16, got Half"


@pytest.mark.parametrize("error", [ValueError("x must be [4, 8], got BFloat16 [4] on cuda:0"),
                                   RuntimeError("fa_kernels flash_fwd: an illegal memory access was encountered")])
def test_other_errors_pass_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as err:
        _errors.call(_op_raising(error))
    assert err.value is error
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
