"""flash_attn's fused norm API (flash_attn.ops.triton.layer_norm): rms_norm_fn, layer_norm_fn and the
RMSNorm / DropoutAddRMSNorm modules, on fa_kernels' backends."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from fa_kernels import auto, reference, validate
from fa_kernels import backend as _backend

Opt = torch.Tensor | None
# what each backend hands back: y, the new residual stream s, the dropout keep mask (None without one)
NormParts = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _new_seed() -> int:
    return int(torch.randint(0, 2**30, (1,), dtype=torch.int64).item())


def layer_norm_fn(x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt = None, x1: Opt = None,
                  weight1: Opt = None, bias1: Opt = None, eps: float = 1e-6, dropout_p: float = 0.0,
                  rowscale: Opt = None, prenorm: bool = False, residual_in_fp32: bool = False,
                  zero_centered_weight: bool = False, is_rms_norm: bool = False,
                  return_dropout_mask: bool = False, out_dtype: torch.dtype | None = None, out: Opt = None,
                  residual_out: Opt = None, *, backend: str | None = None) -> Any:
    """s = dropout(x * rowscale) + residual; y = norm(s) * weight + bias.

    Returns y; (y, s) with ``prenorm``; with ``return_dropout_mask`` the keep mask (bool, x's shape, or
    None without dropout) and the x1 mask slot (always None) are appended.
    """
    if x1 is not None or weight1 is not None or bias1 is not None:
        raise NotImplementedError("x1 / weight1 / bias1 (parallel residual branches) are not supported")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p={dropout_p} must be in [0, 1)")
    validate.norm(x, weight, bias, residual, rowscale, out, residual_out, out_dtype, backend)
    shape, n = x.shape, x.shape[-1]
    for name, t in (("residual", residual), ("out", out), ("residual_out", residual_out)):
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} must have x's shape {tuple(shape)}, got {tuple(t.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (n,):
            raise ValueError(f"{name} must be ({n},), got {tuple(t.shape)}")
    if rowscale is not None and rowscale.shape != shape[:-1]:
        raise ValueError(f"rowscale must be {tuple(shape[:-1])}, got {tuple(rowscale.shape)}")
    residual_dtype = (residual.dtype if residual is not None
                      else torch.float32 if residual_in_fp32 else x.dtype)
    if residual_out is not None and residual_out.dtype != residual_dtype:
        raise TypeError(f"residual_out must be {residual_dtype}, got {residual_out.dtype}")
    out_dtype = out_dtype or (out.dtype if out is not None else x.dtype)
    fwd_b, bwd_b = _backends(backend, x, (x, weight, bias, residual), dropout_p)
    unsupported = "cuda" in (fwd_b, bwd_b) and _cuda_unsupported(
        is_rms_norm, bias, rowscale, zero_centered_weight, out, residual_out, x.dtype, weight,
        residual_dtype)
    if unsupported:
        if (backend or _backend.get_backend()) == "cuda":  # asked for by name: say why not
            raise NotImplementedError(f"the cuda norm kernel does not support {unsupported}; use backend='triton'")
        fwd_b = bwd_b = "triton"  # "auto" takes the best backend that can run the call, and says so once
        _note_fallback(unsupported)
    if validate.norm_is_empty(x):
        fwd_b = bwd_b = "reference"  # no rows: plain PyTorch answers with empty tensors, no kernel launch
    seed = _new_seed() if dropout_p > 0 else 0
    if "cuda" in (fwd_b, bwd_b):
        y, s, keep = _cuda(x, weight, residual, eps, dropout_p, seed, residual_dtype, prenorm,
                           return_dropout_mask and dropout_p > 0, out_dtype, fwd_b, bwd_b)
    elif fwd_b == "triton":
        y, s, keep = _triton(x, weight, bias, residual, rowscale, eps, dropout_p, prenorm, is_rms_norm,
                             zero_centered_weight, residual_dtype, out_dtype, return_dropout_mask,
                             seed, out, residual_out)
    else:
        y, s, keep = _reference(x, weight, bias, residual, rowscale, eps, dropout_p, is_rms_norm,
                                zero_centered_weight, residual_dtype, out_dtype, seed)
    y = y.reshape(shape)
    result: list[Any] = [y]
    if prenorm:
        result.append(s.reshape(shape))
    if return_dropout_mask:
        result += [keep.reshape(shape) if keep is not None else None, None]
    return result[0] if len(result) == 1 else tuple(result)


def _backends(backend: str | None, x: torch.Tensor, inputs: tuple[Opt, ...],
              dropout_p: float) -> tuple[str, str]:
    """(forward backend, backward backend). Named backends run both directions; "auto" on a GPU looks
    each direction up in the measured table (auto.py), the backward only when a gradient will flow."""
    name = backend or _backend.get_backend()
    if name != "auto" or x.device.type != "cuda":
        chosen = _backend.resolve(backend, x.device, "norm")
        return chosen, chosen
    n = x.shape[-1]
    shape = auto.NormShape(rows=x.numel() // n if n else 0, hidden=n, dropout=dropout_p > 0)
    fwd = _backend.resolve(backend, x.device, "norm", shape=shape, direction="forward")
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    bwd = _backend.resolve(backend, x.device, "norm", shape=shape, direction="backward") if needs_grad else fwd
    return fwd, bwd


def _cuda(x: torch.Tensor, weight: Opt, residual: Opt, eps: float, dropout_p: float, seed: int,
          residual_dtype: torch.dtype, prenorm: bool, want_keep: bool, out_dtype: torch.dtype, fwd_b: str,
          bwd_b: str) -> NormParts:
    """Both directions on the CUDA kernels, or one of them (the other on Triton's): norm_split.py."""
    from fa_kernels.norm_split import SplitRmsNormFunction

    args = (x, weight, residual, float(eps), float(dropout_p), seed, residual_dtype,
            prenorm, want_keep, out_dtype, fwd_b, bwd_b)
    # torch declares autograd.Function.apply without annotations
    return SplitRmsNormFunction.apply(*args)  # type: ignore[no-any-return, no-untyped-call]


def _cuda_unsupported(is_rms: bool, bias: Opt, rowscale: Opt, zero_centered: bool, out: Opt,
                      residual_out: Opt, x_dtype: torch.dtype, weight: Opt,
                      residual_dtype: torch.dtype) -> str:
    """What of this call the CUDA kernel lacks ('' when it can run it). Mixed precision it has: weight
    and the residual stream in x's dtype or float32, any out_dtype."""
    mixed_ok = (x_dtype, torch.float32)
    checks = {"layer norm (is_rms_norm=False)": not is_rms, "bias": bias is not None,
              "rowscale": rowscale is not None, "zero_centered_weight": zero_centered,
              "out / residual_out buffers": out is not None or residual_out is not None,
              f"weight dtype {weight.dtype if weight is not None else ''} with x {x_dtype}":
                  weight is not None and weight.dtype not in mixed_ok,
              f"residual dtype {residual_dtype} with x {x_dtype}": residual_dtype not in mixed_ok}
    return ", ".join(name for name, hit in checks.items() if hit)


_noted: set[str] = set()


def _note_fallback(why: str) -> None:
    if why not in _noted:  # once per reason: a training loop would repeat it every step
        _noted.add(why)
        warnings.warn(f"fa_kernels: the cuda norm kernel does not support {why}; running the triton backend",
                      stacklevel=4)


def _triton(x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt, rowscale: Opt, eps: float,
            dropout_p: float, prenorm: bool, is_rms: bool, zero_centered: bool,
            residual_dtype: torch.dtype, out_dtype: torch.dtype, want_keep: bool, seed: int, out: Opt,
            residual_out: Opt) -> NormParts:
    from fa_kernels.triton.norm import FusedNormFunction, NormCall

    n = x.shape[-1]
    call = NormCall(eps=float(eps), dropout_p=float(dropout_p), is_rms=is_rms,
                    zero_centered_weight=zero_centered, residual_dtype=residual_dtype,
                    out_dtype=out_dtype, store_keep=want_keep and dropout_p > 0, prenorm=prenorm)
    flat_out = out.view(-1, n) if out is not None else None
    flat_res_out = residual_out.view(-1, n) if residual_out is not None else None
    y, s, keep = FusedNormFunction.apply(  # type: ignore[no-untyped-call]
        x, weight, bias, residual,
        rowscale.reshape(-1).contiguous() if rowscale is not None else None, call, seed, flat_out,
        flat_res_out)
    return y, s, keep.bool() if keep is not None else None


def _reference(x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt, rowscale: Opt, eps: float,
               dropout_p: float, is_rms: bool, zero_centered: bool, residual_dtype: torch.dtype,
               out_dtype: torch.dtype, seed: int) -> NormParts:
    keep = None
    if dropout_p > 0:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        keep = torch.rand(x.shape, generator=gen, device=x.device) >= dropout_p
    if is_rms:
        y, s = reference.rms_norm(x, weight, bias, residual=residual, eps=eps, dropout_mask=keep,
                                  dropout_p=dropout_p, rowscale=rowscale,
                                  zero_centered_weight=zero_centered)
    else:
        y, s = reference.layer_norm(x, weight, bias, residual=residual, eps=eps, dropout_mask=keep,
                                    dropout_p=dropout_p, rowscale=rowscale,
                                    zero_centered_weight=zero_centered)
    return y.to(out_dtype), s.to(residual_dtype), keep


def rms_norm_fn(x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt = None, x1: Opt = None,
                weight1: Opt = None, bias1: Opt = None, eps: float = 1e-6, dropout_p: float = 0.0,
                rowscale: Opt = None, prenorm: bool = False, residual_in_fp32: bool = False,
                zero_centered_weight: bool = False, return_dropout_mask: bool = False,
                out_dtype: torch.dtype | None = None, out: Opt = None, residual_out: Opt = None, *,
                backend: str | None = None) -> Any:
    """RMSNorm flavour of :func:`layer_norm_fn` (same arguments and returns)."""
    return layer_norm_fn(x, weight, bias, residual, x1, weight1, bias1, eps, dropout_p, rowscale,
                         prenorm, residual_in_fp32, zero_centered_weight, True, return_dropout_mask,
                         out_dtype, out, residual_out, backend=backend)


class RMSNorm(nn.Module):
    bias: torch.Tensor | None  # registered as None: the norm has no bias, as in flash_attn
    def __init__(self, hidden_size: int, eps: float = 1e-5, dropout_p: float = 0.0,
                 zero_centered_weight: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.eps, self.dropout_p, self.zero_centered_weight = eps, dropout_p, zero_centered_weight
        self.weight = nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight) if self.zero_centered_weight else nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, prenorm: bool = False,
                residual_in_fp32: bool = False) -> Any:
        return rms_norm_fn(x, self.weight, self.bias, residual=residual, eps=self.eps,
                           dropout_p=self.dropout_p if self.training else 0.0, prenorm=prenorm,
                           residual_in_fp32=residual_in_fp32,
                           zero_centered_weight=self.zero_centered_weight)


class DropoutAddRMSNorm(nn.Module):
    """z = RMSNorm(dropout(x0) + residual); returns z, or (z, x) with prenorm, x the new residual.
    Dropout only in training mode."""
    bias: torch.Tensor | None  # registered as None: the norm has no bias, as in flash_attn

    def __init__(self, hidden_size: int, prenorm: bool = False, p: float = 0.0, eps: float = 1e-5,
                 residual_in_fp32: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.prenorm, self.p, self.eps, self.residual_in_fp32 = prenorm, p, eps, residual_in_fp32
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x0: torch.Tensor, residual: torch.Tensor | None = None) -> Any:
        return rms_norm_fn(x0, self.weight, self.bias, residual=residual, eps=self.eps,
                           dropout_p=self.p if self.training else 0.0, prenorm=self.prenorm,
                           residual_in_fp32=self.residual_in_fp32)
