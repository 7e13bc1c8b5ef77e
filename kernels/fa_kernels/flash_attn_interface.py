"""flash_attn's public attention API, argument for argument, on fa_kernels' backends.

Switch imports: ``from fa_kernels import flash_attn_func`` for ``from flash_attn import flash_attn_func``.
Everything flash_attn accepts is either supported or refused with NotImplementedError naming the argument.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fa_kernels import backend as _backend
from fa_kernels import empty, reference, validate
from fa_kernels.calls import AttnProblem

MAX_HEAD_DIM = 256


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, varlen: bool) -> None:
    want = 3 if varlen else 4
    layout = "(total, nheads, headdim)" if varlen else "(batch, seqlen, nheads, headdim)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != want:
            raise ValueError(f"{name} must be {layout}, got shape {tuple(t.shape)}")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"q, k, v must be float16 or bfloat16, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on the same device")
    head_dim = q.shape[-1]
    if head_dim % 8 != 0 or head_dim > MAX_HEAD_DIM:
        raise NotImplementedError(f"head_dim={head_dim}: supported are multiples of 8 up to {MAX_HEAD_DIM}")
    if k.shape[-1] != head_dim or v.shape[-1] != head_dim:
        raise NotImplementedError("q, k and v must share one head_dim (different v head_dim is unsupported)")
    nheads, nheads_k = q.shape[-2], k.shape[-2]
    if v.shape[-2] != nheads_k or nheads % nheads_k != 0:
        raise ValueError(f"nheads ({nheads}) must be a multiple of nheads_k ({nheads_k}) and v's heads")
    if k.shape[:-2] != v.shape[:-2]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same batch and seqlen")
    if not varlen and k.shape[0] != q.shape[0]:
        raise ValueError(f"batch of q ({q.shape[0]}) and k ({k.shape[0]}) differ")


def _last_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _window(window_size: tuple[int, int] | list[int], causal: bool) -> tuple[int, int]:
    left, right = (int(window_size[0]), int(window_size[1]))
    if left < -1 or right < -1:
        raise ValueError(f"window_size={window_size}: each side is -1 (unbounded) or >= 0")
    return left, (0 if causal else right)


def _alibi(alibi_slopes: torch.Tensor | None, batch: int, nheads: int) -> torch.Tensor | None:
    if alibi_slopes is None:
        return None
    if alibi_slopes.dtype != torch.float32:
        raise TypeError("alibi_slopes must be float32 (flash_attn's convention)")
    if tuple(alibi_slopes.shape) not in ((nheads,), (batch, nheads)):
        raise ValueError(f"alibi_slopes must be (nheads,) or (batch, nheads), got {tuple(alibi_slopes.shape)}")
    return alibi_slopes.contiguous()


def check_s_aux(s_aux: torch.Tensor | None, nheads: int, device: torch.device) -> torch.Tensor | None:
    """Attention sinks as the kernels read them: (nheads,) floats, contiguous, on q's device."""
    if s_aux is None:
        return None
    if not isinstance(s_aux, torch.Tensor) or not s_aux.is_floating_point():
        raise TypeError(f"s_aux must be a floating-point tensor of shape (nheads,), got {s_aux!r:.80}")
    if tuple(s_aux.shape) != (nheads,):
        raise ValueError(f"s_aux must have shape (nheads,) = ({nheads},), got {tuple(s_aux.shape)}")
    if s_aux.device != device:
        raise ValueError(f"s_aux is on {s_aux.device}, q on {device}")
    return s_aux.contiguous()


def _new_seed() -> int:
    # from torch's default CPU generator: torch.manual_seed makes dropout reproducible, no device sync
    return int(torch.randint(0, 2**30, (1,), dtype=torch.int64).item())


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, cu_q: torch.Tensor | None,
               cu_k: torch.Tensor | None, max_sq: int, max_sk: int, dropout_p: float,
               softmax_scale: float | None, causal: bool, window_size: Any, softcap: float,
               alibi_slopes: torch.Tensor | None, return_attn_probs: bool,
               backend: str | None, s_aux: torch.Tensor | None = None) -> Any:
    varlen = cu_q is not None
    validate.attention(q, k, v, cu_q, cu_k, max_sq, max_sk, backend)
    _check(q, k, v, varlen=varlen)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p={dropout_p} must be in [0, 1)")
    if softcap < 0:
        raise ValueError(f"softcap={softcap} must be >= 0")
    if validate.attention_is_empty(q, k, varlen):
        return empty.attention(q, k, v, varlen=varlen, softmax_scale=softmax_scale,
                               return_attn_probs=return_attn_probs)
    batch = (cu_q.numel() - 1) if cu_q is not None else q.shape[0]
    head_dim = q.shape[-1]
    window = _window(window_size, causal)
    problem = AttnProblem(
        batch=batch, nheads=q.shape[-2], nheads_k=k.shape[-2], head_dim=head_dim,
        max_seqlen_q=max_sq, max_seqlen_k=max_sk,
        softmax_scale=softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(head_dim),
        causal=causal, window=window, softcap=float(softcap), dropout_p=float(dropout_p),
        varlen=varlen)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    impl = _backend.attention_impl(backend, q.device, problem, alibi=alibi_slopes is not None,
                                   sink=s_aux is not None, needs_grad=needs_grad)
    seed = _new_seed() if dropout_p > 0 else 0
    out, lse = impl(_last_contiguous(q), _last_contiguous(k), _last_contiguous(v), cu_q, cu_k,
                    _alibi(alibi_slopes, batch, q.shape[-2]), problem, seed,
                    check_s_aux(s_aux, q.shape[-2], q.device))
    if not return_attn_probs:
        return out
    probs = None if varlen else _attn_probs(q, k, problem, alibi_slopes, lse, seed)
    return out, lse, probs


def _attn_probs(q: torch.Tensor, k: torch.Tensor, problem: AttnProblem, alibi: torch.Tensor | None,
                lse: torch.Tensor, seed: int) -> torch.Tensor:
    """The softmax the kernel used (from its lse); dropped entries negated, as flash_attn's S_dmask."""
    scores = reference.attention_scores(q, k, softmax_scale=problem.softmax_scale, causal=problem.causal,
                                        window_size=problem.window, softcap=problem.softcap,
                                        alibi_slopes=alibi)
    probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    if problem.dropout_p > 0:
        keep = _backend.dropout_keep_mask(problem, seed, q.device)
        probs = torch.where(keep, probs, -probs)
    return probs.to(q.dtype)


def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, softmax_scale: float | None = None, causal: bool = False,
                    window_size: tuple[int, int] | list[int] = (-1, -1), softcap: float = 0.0,
                    alibi_slopes: torch.Tensor | None = None, deterministic: bool = False,
                    return_attn_probs: bool = False, *, s_aux: torch.Tensor | None = None,
                    backend: str | None = None) -> Any:
    """q (batch, seqlen_q, nheads, headdim), k/v (batch, seqlen_k, nheads_k, headdim) -> out like q.

    ``deterministic`` is accepted and always honoured: the backward never uses atomics.
    With ``return_attn_probs``: (out, softmax_lse (batch, nheads, seqlen_q), probs).
    ``s_aux`` (nheads,): attention sinks (gpt-oss), one logit per head added to every row's softmax
    denominator; differentiable, and included in softmax_lse.
    """
    return _attention(q, k, v, cu_q=None, cu_k=None, max_sq=q.shape[1], max_sk=k.shape[1],
                      dropout_p=dropout_p, softmax_scale=softmax_scale, causal=causal,
                      window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes,
                      return_attn_probs=return_attn_probs, backend=backend, s_aux=s_aux)


def flash_attn_qkvpacked_func(qkv: torch.Tensor, dropout_p: float = 0.0, softmax_scale: float | None = None,
                              causal: bool = False, window_size: tuple[int, int] | list[int] = (-1, -1),
                              softcap: float = 0.0, alibi_slopes: torch.Tensor | None = None,
                              deterministic: bool = False, return_attn_probs: bool = False, *,
                              s_aux: torch.Tensor | None = None, backend: str | None = None) -> Any:
    """qkv (batch, seqlen, 3, nheads, headdim)."""
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv must be (batch, seqlen, 3, nheads, headdim), got {tuple(qkv.shape)}")
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal,
                           window_size, softcap, alibi_slopes, deterministic, return_attn_probs,
                           s_aux=s_aux, backend=backend)


def flash_attn_kvpacked_func(q: torch.Tensor, kv: torch.Tensor, dropout_p: float = 0.0,
                             softmax_scale: float | None = None, causal: bool = False,
                             window_size: tuple[int, int] | list[int] = (-1, -1), softcap: float = 0.0,
                             alibi_slopes: torch.Tensor | None = None, deterministic: bool = False,
                             return_attn_probs: bool = False, *, s_aux: torch.Tensor | None = None,
                             backend: str | None = None) -> Any:
    """q (batch, seqlen_q, nheads, headdim), kv (batch, seqlen_k, 2, nheads_k, headdim)."""
    if kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(f"kv must be (batch, seqlen_k, 2, nheads_k, headdim), got {tuple(kv.shape)}")
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic, return_attn_probs, s_aux=s_aux,
                           backend=backend)


def flash_attn_varlen_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                           cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                           dropout_p: float = 0.0, softmax_scale: float | None = None, causal: bool = False,
                           window_size: tuple[int, int] | list[int] = (-1, -1), softcap: float = 0.0,
                           alibi_slopes: torch.Tensor | None = None, deterministic: bool = False,
                           return_attn_probs: bool = False, block_table: torch.Tensor | None = None, *,
                           s_aux: torch.Tensor | None = None, backend: str | None = None) -> Any:
    """q (total_q, nheads, headdim), k/v (total_k, nheads_k, headdim); cu_seqlens int32 (batch + 1,).

    With ``return_attn_probs``: (out, softmax_lse (nheads, total_q), None).
    With ``block_table`` (batch, max_blocks) int32, k/v are paged caches (num_blocks, page_size,
    nheads_k, headdim) and sequence b's keys are its first cu_seqlens_k[b+1] - cu_seqlens_k[b]
    cache positions (paged prefill); forward only, as in flash_attn.
    """
    validate.cu_seqlens_types(cu_seqlens_q, cu_seqlens_k)
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu.dtype != torch.int32 or cu.dim() != 1:
            raise TypeError(f"{name} must be a 1-D int32 tensor, got {cu.dtype} {tuple(cu.shape)}")
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError("cu_seqlens_q and cu_seqlens_k must describe the same number of sequences")
    if block_table is not None:
        from fa_kernels import kvcache  # imports this module

        out, lse = kvcache.paged_varlen(
            q, k, v, cu_seqlens_q.contiguous(), cu_seqlens_k.contiguous(), int(max_seqlen_q), block_table,
            dropout_p=dropout_p, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
            softcap=softcap, alibi_slopes=alibi_slopes, s_aux=s_aux, backend=backend)
        return (out, lse, None) if return_attn_probs else out
    return _attention(q, k, v, cu_q=cu_seqlens_q.contiguous(), cu_k=cu_seqlens_k.contiguous(),
                      max_sq=int(max_seqlen_q), max_sk=int(max_seqlen_k), dropout_p=dropout_p,
                      softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                      softcap=softcap, alibi_slopes=alibi_slopes,
                      return_attn_probs=return_attn_probs, backend=backend, s_aux=s_aux)
