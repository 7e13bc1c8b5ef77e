"""RMSNorm on the CUDA kernels in one direction or both, the other on Triton's: backend="auto" picks each
direction from the measured table (auto.py), and for the norm the two backends are interchangeable
between directions. Both forwards save the same state: the pre-norm sum s in the residual dtype (x
itself when nothing was added), 1/rms as float32 [rows], no mean; both draw the dropout mask from the
seed by the same Philox counters and the same threshold ceil(p * 65536), so either backward regenerates
the mask the other forward used. Only calls the CUDA kernels support come here (norm.py checks).
"""

from __future__ import annotations

from typing import Any

import torch

from fa_kernels._alloc import as_rows, input_shaped
from fa_kernels.cuda import norm as cuda_norm

Opt = torch.Tensor | None
FwdParts = cuda_norm.FwdParts


def _norm_call(ctx_or_args: dict[str, Any]) -> Any:
    from fa_kernels.triton.norm import NormCall

    a = ctx_or_args
    return NormCall(eps=a["eps"], dropout_p=a["dropout_p"], is_rms=True, zero_centered_weight=False,
                    residual_dtype=a["residual_dtype"], out_dtype=a["out_dtype"], store_keep=a["store_keep"],
                    prenorm=a["prenorm"])


def _forward_triton(x: torch.Tensor, weight: Opt, residual: Opt, args: dict[str, Any]) -> FwdParts:
    from fa_kernels.triton import norm as triton_norm

    y, s, keep, rstd, _ = triton_norm.forward(x, weight, None, residual, None, _norm_call(args), args["seed"])
    return y, s, rstd, keep.bool() if keep is not None else None


def _backward_triton(dy: torch.Tensor, ds: Opt, s: torch.Tensor, weight: Opt, rstd: torch.Tensor,
                     args: dict[str, Any]) -> tuple[torch.Tensor, Opt, Opt]:
    from fa_kernels.triton import norm as triton_norm

    dx, dres, dw, _ = triton_norm.backward(dy, ds, s, weight, None, None, rstd, None, _norm_call(args),
                                           args["seed"], args["x_dtype"], args["has_residual"])
    return dx, dres, dw


class SplitRmsNormFunction(torch.autograd.Function):
    """(x, residual, weight) -> (y, s, keep) with the Triton backend's conventions (see triton/norm.py),
    each direction on the backend named for it: both on "cuda" for backend="cuda", or split by "auto"."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: Opt, residual: Opt, eps: float, dropout_p: float,
                seed: int, residual_dtype: torch.dtype, prenorm: bool, store_keep: bool,
                out_dtype: torch.dtype | None, fwd_backend: str, bwd_backend: str) -> tuple[torch.Tensor, Opt, Opt]:
        args = {"eps": eps, "dropout_p": dropout_p, "seed": seed, "residual_dtype": residual_dtype,
                "out_dtype": out_dtype or x.dtype, "store_keep": store_keep, "prenorm": prenorm,
                "x_dtype": x.dtype, "has_residual": residual is not None, "bwd": bwd_backend}
        ctx.x_shape = x.shape
        n = x.shape[-1]
        x = as_rows(x, n)
        residual = as_rows(residual, n) if residual is not None else None
        run = cuda_norm.forward if fwd_backend == "cuda" else _forward_triton
        y, s, rstd, keep = run(x, weight, residual, args)
        ctx.save_for_backward(s if s is not None else x, weight, rstd)
        ctx.args = args
        ctx.set_materialize_grads(False)  # an unused residual_out must not cost a zero-filled read
        if keep is not None:
            ctx.mark_non_differentiable(keep)
        return y, s, keep

    @staticmethod
    def backward(ctx: Any, dy: Opt, ds: Opt, _dkeep: Opt) -> tuple[Opt, ...]:
        s, weight, rstd = ctx.saved_tensors
        args = ctx.args
        if dy is None:
            dy = torch.zeros(s.shape, dtype=args["out_dtype"], device=s.device)
        run = cuda_norm.backward if args["bwd"] == "cuda" else _backward_triton
        dx, dres, dw = run(dy, ds, s, weight, rstd, args)
        dx, dres = input_shaped(dx, dres, ctx.x_shape)
        return (dx, dw, dres if args["has_residual"] else None, *([None] * 9))
