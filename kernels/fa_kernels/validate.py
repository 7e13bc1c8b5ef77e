"""Argument checks at every public entry point, before any kernel sees the tensors (issue #10).

A wrong argument raises TypeError (wrong type or dtype), ValueError (shape, device, value) or
NotImplementedError (valid for flash_attn, not supported here), naming the argument and what is expected.
The compiled ops validate again (they are public through torch.ops); this layer gives the clearer message
and covers the Triton and reference backends, which have no checks of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_HIDDEN = 32768  # one row lives in registers (both norm backends)
MAX_HEAD_DIM = 256

Named = Iterable[tuple[str, torch.Tensor | None]]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _tensors(named: Named) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, t in named:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        out.append((name, t))
    return out


def same_device(named: Named, backend: str | None) -> torch.device:
    """Every tensor on the first one's device; a CUDA device when the cuda backend is asked for."""
    tensors = _tensors(named)
    first_name, first = tensors[0]
    for name, t in tensors[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}: "
                             "all tensors must be on one device")
    if backend == "cuda" and first.device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors, {first_name} is on {first.device}")
    return first.device


def float_dtype(name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {_dtype_name(t.dtype)}")


# -- norm --------------------------------------------------------------------------------------


def norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
         residual: torch.Tensor | None, rowscale: torch.Tensor | None, out: torch.Tensor | None,
         residual_out: torch.Tensor | None, out_dtype: torch.dtype | None, backend: str | None) -> None:
    """Types, dtypes, devices and the hidden size of a layer_norm_fn / rms_norm_fn call (shapes are
    checked by the caller against x's)."""
    named = [("x", x), ("weight", weight), ("bias", bias), ("residual", residual), ("rowscale", rowscale),
             ("out", out), ("residual_out", residual_out)]
    same_device(named, backend)
    for name, t in named:
        float_dtype(name, t)
    if out_dtype is not None and out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (the hidden size), got a scalar")
    n = x.shape[-1]
    if n == 0:
        raise ValueError(f"x has hidden size 0 (shape {tuple(x.shape)}): nothing to normalise over")
    if n > MAX_HIDDEN:
        raise NotImplementedError(
            f"hidden size {n} > {MAX_HIDDEN}: the fused norm keeps a row in registers; split the row")


def norm_is_empty(x: torch.Tensor) -> bool:
    """No rows (batch 0 or seqlen 0): the answer is empty, as flash_attn's."""
    return x.numel() == 0


# -- attention ---------------------------------------------------------------------------------


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor | None,
              cu_k: torch.Tensor | None, max_sq: int, max_sk: int, backend: str | None) -> None:
    """What flash_attn's own checks would refuse, and what would crash or mislead a kernel: devices,
    head counts and head dim, and varlen's cu_seqlens / max_seqlen against the data."""
    same_device([("q", q), ("k", k), ("v", v), ("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)], backend)
    if q.dim() < 3 or k.dim() < 3 or v.dim() < 3:
        return  # the layout check names the wrong rank
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        raise ValueError(f"nheads ({q.shape[-2]}) and nheads_k ({k.shape[-2]}) must be at least 1")
    head_dim = q.shape[-1]
    if head_dim == 0 or head_dim % 8 != 0 or head_dim > MAX_HEAD_DIM:
        raise NotImplementedError(f"head_dim={head_dim}: supported are multiples of 8 up to {MAX_HEAD_DIM}")
    if cu_q is not None and cu_k is not None:
        _cu_seqlens("cu_seqlens_q", cu_q, q.shape[0], max_sq, "max_seqlen_q")
        _cu_seqlens("cu_seqlens_k", cu_k, k.shape[0], max_sk, "max_seqlen_k")


def cu_seqlens_types(cu_q: object, cu_k: object) -> None:
    for name, cu in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        if not isinstance(cu, torch.Tensor):
            raise TypeError(f"{name} must be a 1-D int32 tensor, got {type(cu).__name__}")


def _cu_seqlens(name: str, cu: torch.Tensor, total: int, max_seqlen: int, max_name: str) -> None:
    if cu.dtype != torch.int32 or cu.dim() != 1 or cu.numel() < 1:
        raise TypeError(f"{name} must be a 1-D int32 tensor (batch + 1,), got {cu.dtype} {tuple(cu.shape)}")
    offsets = cu.tolist()  # one small copy: the kernels would read out of bounds on a bad table
    if offsets[0] != 0:
        raise ValueError(f"{name} must start at 0, got {offsets[0]}")
    lengths = [b - a for a, b in itertools.pairwise(offsets)]
    if any(n < 0 for n in lengths):
        raise ValueError(f"{name} must be non-decreasing, got {offsets[:8]}{'...' if len(offsets) > 8 else ''}")
    if offsets[-1] != total:
        raise ValueError(f"{name} ends at {offsets[-1]} but the packed tensor has {total} tokens")
    longest = max(lengths, default=0)
    if int(max_seqlen) < longest:
        raise ValueError(f"{max_name}={max_seqlen} is smaller than the longest sequence in {name} ({longest})")


def attention_is_empty(q: torch.Tensor, k: torch.Tensor, varlen: bool) -> bool:
    """No queries or no keys anywhere: flash_attn answers out 0, lse +inf without a kernel."""
    if varlen:
        return q.shape[0] == 0 or k.shape[0] == 0
    return q.shape[0] == 0 or q.shape[1] == 0 or k.shape[1] == 0
