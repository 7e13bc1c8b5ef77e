"""Attention of new tokens over a KV cache: flash_attn's ``flash_attn_with_kvcache``, argument for
argument, and the paged (block_table) path of ``flash_attn_varlen_func``.

    out = flash_attn_with_kvcache(q, k_cache, v_cache, k=k_new, v=v_new, cache_seqlens=lens, causal=True)

Forward only, as in flash_attn. On the Triton backend one kernel appends k/v (rotary applied) into the
caches, one computes attention with the keys split across CTAs when the batch's (sequence, KV head)
pairs cannot fill the GPU (flash-decoding), and one merges the splits by their log-sum-exp.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any, NoReturn

import torch

from fa_kernels import backend as _backend
from fa_kernels import reference
from fa_kernels.calls import CacheAttnProblem
from fa_kernels.flash_attn_interface import MAX_HEAD_DIM, _alibi, _window, check_s_aux

Opt = torch.Tensor | None
Rotary = tuple[Opt, Opt, bool]  # (rotary_cos, rotary_sin, interleaved)


def _check_qkv(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, q_dims: int,
               names: tuple[str, str] = ("k_cache", "v_cache")) -> None:
    if q.dim() != q_dims:
        layout = "(batch, seqlen, nheads, headdim)" if q_dims == 4 else "(total_q, nheads, headdim)"
        raise ValueError(f"q must be {layout}, got shape {tuple(q.shape)}")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"q must be float16 or bfloat16, got {q.dtype}")
    for name, t in zip(names, (k_cache, v_cache), strict=True):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (batch or blocks, seqlen or page, nheads_k, headdim), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype != q.dtype or t.device != q.device:
            raise TypeError(f"{name} must match q's dtype and device, got {t.dtype} on {t.device}")
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last dim (it is written in place)")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"{names[0]} {tuple(k_cache.shape)} and {names[1]} {tuple(v_cache.shape)} differ")
    head_dim, nheads, nheads_k = q.shape[-1], q.shape[-2], k_cache.shape[2]
    if head_dim % 8 != 0 or head_dim > MAX_HEAD_DIM:
        raise NotImplementedError(f"head_dim={head_dim}: supported are multiples of 8 up to {MAX_HEAD_DIM}")
    if k_cache.shape[3] != head_dim:
        raise NotImplementedError("q and the caches must share one head_dim")
    if nheads % nheads_k != 0:
        raise ValueError(f"nheads ({nheads}) must be a multiple of the caches' nheads_k ({nheads_k})")


def _index(name: str, t: Any, batch: int, device: torch.device) -> torch.Tensor | None:
    """An optional per-sequence index tensor as the kernels read it: (batch,) int32 on q's device."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dim() != 1 or t.numel() != batch:
        raise TypeError(f"{name} must be an int32 tensor of shape (batch,) = ({batch},), got {t!r:.80}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, q on {device}")
    return t.to(torch.int32).contiguous()


def _paging(k_cache: torch.Tensor, block_table: Any, batch: int) -> tuple[torch.Tensor | None, int, int]:
    """(block_table, page_size (0 = contiguous), capacity: the most keys a sequence can hold)."""
    if block_table is None:
        return None, 0, k_cache.shape[1]
    if not isinstance(block_table, torch.Tensor) or block_table.dim() != 2 or block_table.shape[0] != batch:
        raise ValueError(f"block_table must be (batch, max_blocks) = ({batch}, ...), got {block_table!r:.80}")
    if block_table.dtype.is_floating_point or block_table.device != k_cache.device:
        raise TypeError("block_table must be an int32 tensor on the caches' device")
    page_size = k_cache.shape[1]
    return block_table.to(torch.int32).contiguous(), page_size, block_table.shape[1] * page_size


def _check_new(q: torch.Tensor, k: Any, v: Any, k_cache: torch.Tensor, cache_seqlens: Any) -> int:
    """The number of new tokens appended (0 without k/v)."""
    if (k is None) != (v is None):
        raise ValueError("k and v must be given together")
    if k is None:
        return 0
    want = (q.shape[0], k.shape[1] if k.dim() == 4 else -1, *k_cache.shape[2:])
    for name, t in (("k", k), ("v", v)):
        if t.dim() != 4 or tuple(t.shape) != want or t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{name} must be (batch, seqlen_new, nheads_k, headdim) = {want} of q's dtype "
                             f"and device, got {tuple(t.shape)} {t.dtype}")
    if cache_seqlens is None:
        raise ValueError("appending k/v needs cache_seqlens (where each sequence's new tokens go)")
    return int(k.shape[1])


def _check_rotary(cos: Any, sin: Any, k: Any, q: torch.Tensor, capacity: int) -> None:
    if cos is None and sin is None:
        return
    if cos is None or sin is None:
        raise ValueError("rotary_cos and rotary_sin must be given together")
    if k is None:
        raise ValueError("rotary_cos/rotary_sin need the new k and v (they rotate q and the new keys)")
    if cos.dim() != 2 or cos.shape != sin.shape or not cos.is_floating_point():
        raise ValueError(f"rotary_cos/sin must be (seqlen_ro, rotary_dim / 2) floats, got {tuple(cos.shape)}")
    if 2 * cos.shape[1] > q.shape[-1]:
        raise ValueError(f"rotary_dim={2 * cos.shape[1]} exceeds headdim={q.shape[-1]}")
    if cos.shape[0] < capacity:
        raise ValueError(f"rotary_cos/sin have {cos.shape[0]} positions, fewer than the cache's {capacity}")


def _seqlens(cache_seqlens: Any, batch: int, capacity: int, device: torch.device) -> torch.Tensor:
    if cache_seqlens is None:  # flash_attn: the whole cache is valid
        cache_seqlens = capacity
    if isinstance(cache_seqlens, int):
        return torch.full((batch,), cache_seqlens, dtype=torch.int32, device=device)
    out = _index("cache_seqlens", cache_seqlens, batch, device)
    assert out is not None
    return out


def _problem(q: torch.Tensor, k_cache: torch.Tensor, *, capacity: int, page_size: int, seqlen_new: int,
             softmax_scale: float | None, causal: bool, window_size: Any, softcap: float, num_splits: int,
             varlen_q: bool, batch: int, max_seqlen_q: int) -> CacheAttnProblem:
    if softcap < 0:
        raise ValueError(f"softcap={softcap} must be >= 0")
    if not isinstance(num_splits, int) or num_splits < 0:
        raise ValueError(f"num_splits={num_splits!r} must be an int >= 0 (0: chosen per call)")
    head_dim = q.shape[-1]
    return CacheAttnProblem(
        batch=batch, nheads=q.shape[-2], nheads_k=k_cache.shape[2], head_dim=head_dim,
        max_seqlen_q=max_seqlen_q, capacity=capacity, seqlen_new=seqlen_new,
        softmax_scale=softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(head_dim),
        causal=causal, window=_window(window_size, causal), softcap=float(softcap), num_splits=num_splits,
        page_size=page_size, varlen_q=varlen_q, keys_from_cu=varlen_q)


def _last_contiguous(t: torch.Tensor | None) -> Any:
    """The kernels read rows as contiguous head_dim vectors; other strides are free."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


@functools.cache
def _decode() -> ModuleType:
    """The Triton launchers, imported at first use (fa_kernels imports without triton); cached, since a
    decoding loop calls this every step and an import statement costs a lookup through the finders."""
    from fa_kernels.triton import decode

    return decode


def _runs_triton(backend: str | None, device: torch.device) -> bool:
    chosen = _backend.resolve(backend, device)
    if chosen == "cuda":  # asked for by name: there is no CUDA C++ kernel for KV caches
        raise _backend.cuda_cannot("a KV cache (flash_attn_with_kvcache, block_table)")
    return chosen == "triton"


def flash_attn_with_kvcache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k: Opt = None,
                            v: Opt = None, rotary_cos: Opt = None, rotary_sin: Opt = None,
                            cache_seqlens: int | torch.Tensor | None = None, cache_batch_idx: Opt = None,
                            cache_leftpad: Opt = None, block_table: Opt = None,
                            softmax_scale: float | None = None, causal: bool = False,
                            window_size: tuple[int, int] | list[int] = (-1, -1), softcap: float = 0.0,
                            rotary_interleaved: bool = True, alibi_slopes: Opt = None, num_splits: int = 0,
                            return_softmax_lse: bool = False, *, s_aux: Opt = None,
                            backend: str | None = None) -> Any:
    """q (batch, seqlen_q, nheads, headdim) attends to the cache, after k/v (batch, seqlen_new, nheads_k,
    headdim) were written into it in place at cache_seqlens (int or (batch,) int32).

    k_cache/v_cache: (batch_cache, seqlen_cache, nheads_k, headdim), rows chosen by cache_batch_idx; or
    paged, (num_blocks, page_size, nheads_k, headdim) with block_table (batch, max_blocks) int32.
    Sequence b's keys are cache positions [cache_leftpad[b], cache_seqlens[b] + seqlen_new); causal and
    window masks are aligned bottom-right. rotary_cos/sin (seqlen_ro, rotary_dim / 2) rotate the new
    keys at their positions and q at cache_seqlens (+ its row index when causal or windowed).
    ``s_aux`` (nheads,): attention sinks. -> out like q, or (out, softmax_lse (batch, nheads, seqlen_q)).
    """
    _check_qkv(q, k_cache, v_cache, 4)
    batch = q.shape[0]
    table, page_size, capacity = _paging(k_cache, block_table, batch)
    if table is not None and cache_batch_idx is not None:
        raise ValueError("cache_batch_idx cannot be combined with block_table (the table picks the pages)")
    seqlen_new = _check_new(q, k, v, k_cache, cache_seqlens)
    _check_rotary(rotary_cos, rotary_sin, k, q, capacity)
    p = _problem(q, k_cache, capacity=capacity, page_size=page_size, seqlen_new=seqlen_new,
                 softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                 num_splits=num_splits, varlen_q=False, batch=batch, max_seqlen_q=q.shape[1])
    seqlens = _seqlens(cache_seqlens, batch, capacity, q.device)
    tensors = {
        "cache_idx": _index("cache_batch_idx", cache_batch_idx, batch, q.device),
        "leftpad": _index("cache_leftpad", cache_leftpad, batch, q.device),
        "table": table, "alibi": _alibi(alibi_slopes, batch, q.shape[2]),
        "s_aux": check_s_aux(s_aux, q.shape[2], q.device),
    }
    rotary = (rotary_cos, rotary_sin, bool(rotary_interleaved))
    with torch.no_grad():
        if _runs_triton(backend, q.device):
            out, lse = _triton_kvcache(q, k_cache, v_cache, k, v, p, rotary, seqlens=seqlens, **tensors)
        else:
            out, lse = _reference_kvcache(q, k_cache, v_cache, k, v, p, rotary, seqlens=seqlens, **tensors)
    return (out, lse) if return_softmax_lse else out


def _triton_kvcache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k: Opt, v: Opt,
                    p: CacheAttnProblem, rotary: Rotary, *, seqlens: torch.Tensor, cache_idx: Opt, leftpad: Opt,
                    table: Opt, alibi: Opt, s_aux: Opt) -> tuple[torch.Tensor, torch.Tensor]:
    decode = _decode()
    cos, sin, interleaved = rotary
    q, k, v = (_last_contiguous(t) for t in (q, k, v))
    if k is not None or cos is not None:
        if cos is not None and sin is not None:  # both or neither (_check_rotary)
            cos, sin = cos.contiguous(), sin.contiguous()
        q = decode.append(q, k_cache, v_cache, k, v, p, seqlens=seqlens, cache_idx=cache_idx,
                          block_table=table, cos=cos, sin=sin, interleaved=interleaved)
    out_lse: tuple[torch.Tensor, torch.Tensor] = decode.attend(  # decode: a module imported at first use
        q, k_cache, v_cache, p, seqlens_k=seqlens, k_starts=leftpad, cache_idx=cache_idx, block_table=table,
        cu_q=None, alibi=alibi, s_aux=s_aux)
    return out_lse


def _reference_kvcache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k: Opt, v: Opt,
                       p: CacheAttnProblem, rotary: Rotary, *, seqlens: torch.Tensor, cache_idx: Opt,
                       leftpad: Opt, table: Opt, alibi: Opt, s_aux: Opt) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin, interleaved = rotary
    out, lse = reference.kvcache_attention(
        q, k_cache, v_cache, k, v, cache_seqlens=seqlens, rotary_cos=cos, rotary_sin=sin,
        rotary_interleaved=interleaved, cache_batch_idx=cache_idx, cache_leftpad=leftpad, block_table=table,
        **_attn_keywords(p, alibi, s_aux))
    return out.to(q.dtype), lse


def _attn_keywords(p: CacheAttnProblem, alibi: torch.Tensor | None, s_aux: torch.Tensor | None) -> dict[str, Any]:
    return {"softmax_scale": p.softmax_scale, "causal": p.causal, "window_size": p.window,
            "softcap": p.softcap, "alibi_slopes": alibi, "s_aux": s_aux}


def paged_varlen(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cu_q: torch.Tensor,
                 cu_k: torch.Tensor, max_seqlen_q: int, block_table: Any, *, dropout_p: float,
                 softmax_scale: float | None, causal: bool, window_size: Any, softcap: float,
                 alibi_slopes: torch.Tensor | None, s_aux: torch.Tensor | None,
                 backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """flash_attn_varlen_func with block_table: q (total_q, nheads, headdim) over paged caches.
    -> (out like q, softmax_lse (nheads, total_q))."""
    _check_qkv(q, k_cache, v_cache, 3, ("k", "v"))
    if dropout_p > 0:
        raise NotImplementedError("dropout_p > 0 with block_table (paged attention is for inference)")
    batch = cu_q.numel() - 1
    table, page_size, capacity = _paging(k_cache, block_table, batch)
    assert table is not None
    p = _problem(q, k_cache, capacity=capacity, page_size=page_size, seqlen_new=0,
                 softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                 num_splits=0, varlen_q=True, batch=batch, max_seqlen_q=max_seqlen_q)
    alibi = _alibi(alibi_slopes, batch, q.shape[1])
    sinks = check_s_aux(s_aux, q.shape[1], q.device)
    with torch.no_grad():
        if _runs_triton(backend, q.device):
            out, lse = _decode().attend(_last_contiguous(q), k_cache, v_cache, p, seqlens_k=cu_k,
                                        k_starts=None, cache_idx=None, block_table=table, cu_q=cu_q,
                                        alibi=alibi, s_aux=sinks)
        else:
            out, lse = reference.paged_varlen_attention(q, k_cache, v_cache, cu_q, cu_k, table,
                                                        **_attn_keywords(p, alibi, sinks))
            out = out.to(q.dtype)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k_cache, v_cache)):
        out = _ForwardOnly.apply(out, q, k_cache, v_cache)  # type: ignore[no-untyped-call]
    return out, lse


class _ForwardOnly(torch.autograd.Function):
    """Paged attention has no backward (neither has flash_attn's): the output keeps a grad_fn so that
    a backward through it fails with a clear error instead of leaving q's gradient silently unset."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> NoReturn:
        raise NotImplementedError("flash_attn_varlen_func with block_table has no backward (as in flash_attn): "
                                  "pass unpaged k/v (no block_table) to train through attention")
