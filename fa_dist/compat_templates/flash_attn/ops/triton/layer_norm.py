"""flash_attn.ops.triton.layer_norm on fa_kernels.norm (fa-dist's flash-attn compat): fa_kernels'
own fused norms when it has them, else stand-ins with flash_attn's signatures naming what is
missing."""

from __future__ import annotations

from typing import Any

from flash_attn._fa_kernels import export


def _layer_norm_fn(
    x: Any,
    weight: Any,
    bias: Any,
    residual: Any = None,
    x1: Any = None,
    weight1: Any = None,
    bias1: Any = None,
    eps: float = 1e-6,
    dropout_p: float = 0.0,
    rowscale: Any = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    zero_centered_weight: bool = False,
    is_rms_norm: bool = False,
    return_dropout_mask: bool = False,
    out_dtype: Any = None,
    out: Any = None,
    residual_out: Any = None,
) -> Any: ...


def _rms_norm_fn(
    x: Any,
    weight: Any,
    bias: Any,
    residual: Any = None,
    x1: Any = None,
    weight1: Any = None,
    bias1: Any = None,
    eps: float = 1e-6,
    dropout_p: float = 0.0,
    rowscale: Any = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    zero_centered_weight: bool = False,
    return_dropout_mask: bool = False,
    out_dtype: Any = None,
    out: Any = None,
    residual_out: Any = None,
) -> Any: ...


class _RMSNorm:
    """RMSNorm as a module (flash_attn.ops.triton.layer_norm.RMSNorm)."""

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        dropout_p: float = 0.0,
        zero_centered_weight: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None: ...


SIGNATURES = {"layer_norm_fn": _layer_norm_fn, "rms_norm_fn": _rms_norm_fn, "RMSNorm": _RMSNorm}
__getattr__, __dir__ = export(__name__, "fa_kernels.norm", SIGNATURES)
__all__ = list(SIGNATURES)
