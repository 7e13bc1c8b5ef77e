"""rms_norm on the compiled CUDA kernels (csrc/norm): autograd, and fake implementations so the ops
trace under torch.compile and FakeTensor."""

from __future__ import annotations

from typing import Any

import torch

from fa_kernels._alloc import as_rows, input_shaped
from fa_kernels._extension import cuda_extension
from fa_kernels.cuda._errors import call

Opt = torch.Tensor | None


def _ops() -> Any:  # torch.ops' namespaces resolve op names at run time
    if cuda_extension() is None:
        raise RuntimeError("fa_kernels._C is not built: install a compiled wheel (fa-dist install)")
    return torch.ops.fa_kernels


def _register_fakes() -> None:
    @torch.library.register_fake("fa_kernels::rms_norm_fwd")  # type: ignore[untyped-decorator]
    def _fwd(x: torch.Tensor, residual: Opt, weight: Opt, eps: float, dropout_p: float, seed: int,
             residual_dtype: torch.dtype, out_dtype: torch.dtype, store_residual_out: bool,
             store_keep: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, cols = x.shape
        empty = x.new_empty(0)
        return (x.new_empty((rows, cols), dtype=out_dtype),
                x.new_empty((rows, cols), dtype=residual_dtype) if store_residual_out else empty,
                x.new_empty((rows,), dtype=torch.float32),
                x.new_empty((rows, cols), dtype=torch.bool) if store_keep else empty)

    @torch.library.register_fake("fa_kernels::rms_norm_bwd")  # type: ignore[untyped-decorator]
    def _bwd(dy: torch.Tensor, s: torch.Tensor, rstd: torch.Tensor, weight: Opt, dresidual_out: Opt,
             dropout_p: float, seed: int, x_dtype: torch.dtype,
             separate_dresidual: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        empty = dy.new_empty(0)
        return (dy.new_empty(s.shape, dtype=x_dtype),
                torch.empty_like(s) if separate_dresidual else empty,
                torch.empty_like(weight) if weight is not None else empty)


if cuda_extension() is not None:
    _register_fakes()


class CudaRmsNormFunction(torch.autograd.Function):
    """(x, residual, weight) -> (y, s, keep) with the Triton backend's conventions (see triton/norm.py).

    Mixed precision as flash_attn: weight in x's dtype or float32, the residual stream in x's dtype or
    float32, y in out_dtype; each gradient comes back in its input's dtype."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: Opt, residual: Opt, eps: float,
                dropout_p: float, seed: int, residual_dtype: torch.dtype, prenorm: bool, store_keep: bool,
                out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, Opt, Opt]:
        ctx.x_shape = x.shape
        n = x.shape[-1]
        x = as_rows(x, n)
        residual = as_rows(residual, n) if residual is not None else None
        keep_s = residual is not None or dropout_p > 0 or prenorm or residual_dtype != x.dtype
        y, s, rstd, keep = call(_ops().rms_norm_fwd, x, residual, weight, eps, dropout_p, seed, residual_dtype,
                                out_dtype or x.dtype, keep_s, store_keep)
        s = s if keep_s else None
        ctx.save_for_backward(s if s is not None else x, weight, rstd)
        ctx.dropout_p, ctx.seed, ctx.x_dtype, ctx.out_dtype = dropout_p, seed, x.dtype, y.dtype
        ctx.has_residual = residual is not None
        ctx.separate = residual is not None and (dropout_p > 0 or residual_dtype != x.dtype)
        ctx.set_materialize_grads(False)
        return y, s, keep if store_keep else None

    @staticmethod
    def backward(ctx: Any, dy: Opt, ds: Opt, _dkeep: Opt) -> tuple[Opt, ...]:
        s, weight, rstd = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros(s.shape, dtype=ctx.out_dtype, device=s.device)
        dx, dres, dw = call(_ops().rms_norm_bwd, dy.contiguous(), s, rstd, weight,
                            ds.contiguous() if ds is not None else None, ctx.dropout_p, ctx.seed, ctx.x_dtype,
                            ctx.separate)
        # dresidual is dx itself (not written twice) unless dropout or a dtype change sits between them
        dx, dres = input_shaped(dx, dres if ctx.separate else dx, ctx.x_shape)
        dres = dres if ctx.has_residual else None
        return dx, dw if weight is not None else None, dres, None, None, None, None, None, None, None
