"""flash_attn.ops.rms_norm on fa_kernels (fa-dist's flash-attn compat): DropoutAddRMSNorm is
fa_kernels' module (stand-in with flash_attn's signature when missing); rms_norm and
dropout_add_rms_norm keep flash_attn's positional signatures and map onto fa_kernels' rms_norm_fn."""

from __future__ import annotations

from typing import Any

from flash_attn._fa_kernels import export, missing, require

SOURCE = "fa_kernels.norm"


def _rms_norm_fn(public: str) -> Any:
    return require(SOURCE, "rms_norm_fn", f"{__name__}.{public}")


def rms_norm(x: Any, weight: Any, epsilon: float) -> Any:
    return _rms_norm_fn("rms_norm")(x, weight, None, eps=epsilon)


def dropout_add_rms_norm(
    x0: Any,
    residual: Any,
    weight: Any,
    bias: Any,
    dropout_p: float,
    epsilon: float,
    rowscale: Any = None,
    layerscale: Any = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    return_dropout_mask: bool = False,
) -> Any:
    """z = rmsnorm(dropout(x0 * rowscale) + residual) * weight (+ bias); (z, x) with prenorm, x the
    new residual; the keep mask (True: kept) appended with return_dropout_mask."""
    if layerscale is not None:
        raise missing(f"{__name__}.dropout_add_rms_norm(layerscale=...)", f"{SOURCE} layerscale")
    result = _rms_norm_fn("dropout_add_rms_norm")(
        x0, weight, bias, residual=residual, eps=epsilon, dropout_p=dropout_p, rowscale=rowscale,
        prenorm=prenorm, residual_in_fp32=residual_in_fp32, return_dropout_mask=return_dropout_mask,
    )  # fmt: skip
    if not return_dropout_mask:
        return result
    *outputs, keep, _x1_keep = result  # fa_kernels also returns the (unused) second branch's mask
    if keep is None:  # flash_attn returns an all-kept mask when nothing was dropped
        import torch

        keep = torch.ones(x0.shape, dtype=torch.bool, device=x0.device)
    return (*outputs, keep)


class _DropoutAddRMSNorm:
    """z = RMSNorm(dropout(x0) + residual), (z, x) with prenorm (flash_attn.ops.rms_norm)."""

    def __init__(
        self,
        hidden_size: int,
        prenorm: bool = False,
        p: float = 0.0,
        eps: float = 1e-5,
        residual_in_fp32: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None: ...


SIGNATURES = {"DropoutAddRMSNorm": _DropoutAddRMSNorm}
__getattr__, __dir__ = export(__name__, SOURCE, SIGNATURES)
__all__ = [*SIGNATURES, "dropout_add_rms_norm", "rms_norm"]
