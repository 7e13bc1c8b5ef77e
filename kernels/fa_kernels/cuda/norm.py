"""rms_norm on the compiled CUDA kernels (csrc/norm): each direction as a function (the autograd
Function, which may run either direction on either backend, is norm_split.SplitRmsNormFunction), and
fake implementations so the ops trace under torch.compile and FakeTensor (registered on import)."""

from __future__ import annotations

from typing import Any

import torch

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


# (y, s or None, rstd, keep or None)
FwdParts = tuple[torch.Tensor, Opt, torch.Tensor, Opt]


def forward(x: torch.Tensor, weight: Opt, residual: Opt, args: dict[str, Any]) -> FwdParts:
    """The CUDA forward on (rows, cols) tensors, ``args`` as norm_split.SplitRmsNormFunction keeps them.
    Mixed precision as flash_attn: weight in x's dtype or float32, the residual stream in x's dtype or
    float32, y in out_dtype."""
    keep_s = (residual is not None or args["dropout_p"] > 0 or args["prenorm"]
              or args["residual_dtype"] != x.dtype)
    y, s, rstd, keep = call(_ops().rms_norm_fwd, x, residual, weight, args["eps"], args["dropout_p"],
                            args["seed"], args["residual_dtype"], args["out_dtype"], keep_s, args["store_keep"])
    return y, s if keep_s else None, rstd, keep if args["store_keep"] else None


def backward(dy: torch.Tensor, ds: Opt, s: torch.Tensor, weight: Opt, rstd: torch.Tensor,
             args: dict[str, Any]) -> tuple[torch.Tensor, Opt, Opt]:
    """The CUDA backward -> (dx, dresidual, dweight), each in its input's dtype."""
    # dresidual is dx itself (not written twice) unless dropout or a dtype change sits between them
    separate = args["has_residual"] and (args["dropout_p"] > 0 or args["residual_dtype"] != args["x_dtype"])
    dx, dres, dw = call(_ops().rms_norm_bwd, dy.contiguous(), s, rstd, weight,
                        ds.contiguous() if ds is not None else None, args["dropout_p"], args["seed"],
                        args["x_dtype"], separate)
    return dx, (dres if separate else dx) if args["has_residual"] else None, dw if weight is not None else None
