"""Plain-PyTorch reference implementations: the definition of what every backend must compute.

Used by the tests and by `fa-dist smoke`. Memory is O(seqlen_q * seqlen_k): for checking, not for speed.
Computed in float32 (or the dtype of the inputs if that is wider).
"""

from __future__ import annotations

import math

import torch


def attention_bias_mask(
    seqlen_q: int,
    seqlen_k: int,
    *,
    causal: bool,
    window_size: tuple[int, int],
    device: torch.device,
) -> torch.Tensor:
    """Boolean (seqlen_q, seqlen_k): True where query i may attend key j.

    Causal and sliding windows are aligned to the bottom-right corner (flash_attn's convention): query i
    sits at key position i + seqlen_k - seqlen_q.
    """
    left, right = window_size
    if causal:
        right = 0
    i = torch.arange(seqlen_q, device=device)[:, None] + (seqlen_k - seqlen_q)
    j = torch.arange(seqlen_k, device=device)[None, :]
    allowed = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if right >= 0:
        allowed &= j <= i + right
    if left >= 0:
        allowed &= j >= i - left
    return allowed


def attention_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked, capped, biased logits (batch, nheads, seqlen_q, seqlen_k) in float32; -inf where masked."""
    _batch, seqlen_q, nheads, head_dim = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(head_dim)
    wide = torch.promote_types(q.dtype, torch.float32)
    k = k.to(wide).repeat_interleave(nheads // nheads_k, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q.to(wide), k) * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:
        i = torch.arange(seqlen_q, device=q.device)[:, None] + (seqlen_k - seqlen_q)
        j = torch.arange(seqlen_k, device=q.device)[None, :]
        slopes = alibi_slopes.to(wide)
        slopes = slopes[None, :, None, None] if slopes.dim() == 1 else slopes[:, :, None, None]
        scores = scores - slopes * (i - j).abs()
    allowed = attention_bias_mask(seqlen_q, seqlen_k, causal=causal, window_size=window_size,
                                  device=q.device)
    return scores.masked_fill(~allowed, float("-inf"))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    dropout_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    s_aux: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (b, s_q, h, d) in q's dtype-widened precision, lse (b, h, s_q)).

    ``dropout_mask`` (b, h, s_q, s_k), True = kept, applies dropout after the softmax with 1/(1-p)
    rescaling, as the kernels do. Rows with no allowed key give out 0 and lse +inf.
    ``s_aux`` (nheads,): attention sinks, one more logit per head in every row's softmax denominator
    (in the units of the scaled logits) with no value; lse includes it.
    """
    scores = attention_scores(q, k, softmax_scale=softmax_scale, causal=causal,
                              window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes)
    if s_aux is not None:
        sink = s_aux.to(scores.dtype)[None, :, None, None].expand(*scores.shape[:3], 1)
        lse = torch.logsumexp(torch.cat([scores, sink], dim=-1), dim=-1)
    else:
        lse = torch.logsumexp(scores, dim=-1)
    empty = torch.isneginf(lse)
    probs = torch.exp(scores - lse.masked_fill(empty, 0.0)[..., None]).masked_fill(empty[..., None], 0.0)
    if dropout_mask is not None:
        probs = probs * dropout_mask.to(probs.dtype) / (1.0 - dropout_p)
    nheads, nheads_k = q.shape[2], v.shape[2]
    vv = v.to(probs.dtype).repeat_interleave(nheads // nheads_k, dim=2)
    out = torch.einsum("bhij,bjhd->bihd", probs, vv)
    return out, lse.masked_fill(empty, float("inf"))


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor, *,
           interleaved: bool) -> torch.Tensor:
    """x (..., seqlen, nheads, headdim) with its first 2 * cos.shape[1] dims rotated by the angles of
    ``positions`` (broadcastable to x.shape[:-2]), in float32; positions past the table stay unrotated."""
    half = cos.shape[1]
    inside = positions < cos.shape[0]
    at = positions.clamp(max=cos.shape[0] - 1)
    c = torch.where(inside[..., None], cos.float()[at], 1.0)[..., None, :]
    s = torch.where(inside[..., None], sin.float()[at], 0.0)[..., None, :]
    y = x.float().clone()
    if interleaved:
        a, b = x[..., 0:2 * half:2].float(), x[..., 1:2 * half:2].float()
        y[..., 0:2 * half:2] = a * c - b * s
        y[..., 1:2 * half:2] = a * s + b * c
    else:
        a, b = x[..., :half].float(), x[..., half:2 * half].float()
        y[..., :half] = a * c - b * s
        y[..., half:2 * half] = a * s + b * c
    return y


def cache_rows(cache: torch.Tensor, seq: int, positions: torch.Tensor, *,
               block_table: torch.Tensor | None,
               cache_batch_idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into ``cache`` of the rows holding ``positions`` of sequence ``seq`` (contiguous or paged)."""
    if block_table is not None:
        page = cache.shape[1]
        return block_table[seq].long()[positions // page], positions % page
    row = int(cache_batch_idx[seq]) if cache_batch_idx is not None else seq
    return torch.full_like(positions, row), positions


@torch.no_grad()
def kvcache_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    *,
    cache_seqlens: torch.Tensor,
    rotary_cos: torch.Tensor | None = None,
    rotary_sin: torch.Tensor | None = None,
    rotary_interleaved: bool = True,
    cache_batch_idx: torch.Tensor | None = None,
    cache_leftpad: torch.Tensor | None = None,
    block_table: torch.Tensor | None = None,
    **attn: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """flash_attn_with_kvcache's definition, one sequence at a time: writes k/v (k rotated) into the
    caches at cache_seqlens (in place), then q (rotated) attends to the cache's keys
    [cache_leftpad, cache_seqlens + seqlen_new). ``attn``: keywords of :func:`attention`.
    -> (out (b, s_q, h, d), lse (b, h, s_q)), float32."""
    seqlen_q, seqlen_new = q.shape[1], (k.shape[1] if k is not None else 0)
    window = attn.get("window_size", (-1, -1))
    each_row = bool(attn.get("causal")) or tuple(window) != (-1, -1)  # type: ignore[arg-type]
    outs, lses = [], []
    for b in range(q.shape[0]):
        start = int(cache_seqlens[b])
        qb = q[b:b + 1].float()
        if rotary_cos is not None and rotary_sin is not None and k is not None:
            q_pos = start + (torch.arange(seqlen_q, device=q.device) if each_row else torch.zeros(
                seqlen_q, dtype=torch.long, device=q.device))
            # rounded to q's dtype, as the kernels feed the rotated q to their 16-bit matmuls
            qb = rotary(qb, rotary_cos, rotary_sin, q_pos, interleaved=rotary_interleaved).to(q.dtype).float()
        if k is not None and v is not None:
            new_pos = start + torch.arange(seqlen_new, device=q.device)
            kb = k[b].float()
            if rotary_cos is not None and rotary_sin is not None:
                kb = rotary(kb, rotary_cos, rotary_sin, new_pos, interleaved=rotary_interleaved)
            at = cache_rows(k_cache, b, new_pos, block_table=block_table, cache_batch_idx=cache_batch_idx)
            k_cache[at] = kb.to(k_cache.dtype)
            v_cache[at] = v[b].to(v_cache.dtype)
        first = int(cache_leftpad[b]) if cache_leftpad is not None else 0
        keys = torch.arange(first, start + seqlen_new, device=q.device)
        at = cache_rows(k_cache, b, keys, block_table=block_table, cache_batch_idx=cache_batch_idx)
        out, lse = attention(qb, k_cache[at][None].float(), v_cache[at][None].float(),
                             **_one_sequence(attn, b))  # type: ignore[arg-type]
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def _one_sequence(attn: dict[str, object], b: int) -> dict[str, object]:
    """Keywords of :func:`attention` for sequence b alone (per-sequence ALiBi slopes)."""
    slopes = attn.get("alibi_slopes")
    if isinstance(slopes, torch.Tensor) and slopes.dim() == 2:
        return {**attn, "alibi_slopes": slopes[b]}
    return attn


@torch.no_grad()
def paged_varlen_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                           block_table: torch.Tensor, **attn: object) -> tuple[torch.Tensor, torch.Tensor]:
    """flash_attn_varlen_func with a block table: sequence b's queries q[cu_q[b]:cu_q[b+1]] attend to
    its first cu_k[b+1] - cu_k[b] keys, found through block_table[b].
    -> (out (total_q, h, d), lse (h, total_q)), float32."""
    outs, lses = [], []
    for b in range(cu_seqlens_q.numel() - 1):
        q0, q1 = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
        keys = torch.arange(int(cu_seqlens_k[b + 1] - cu_seqlens_k[b]), device=q.device)
        at = cache_rows(k_cache, b, keys, block_table=block_table, cache_batch_idx=None)
        out, lse = attention(q[None, q0:q1].float(), k_cache[at][None].float(), v_cache[at][None].float(),
                             **_one_sequence(attn, b))  # type: ignore[arg-type]
        outs.append(out[0])
        lses.append(lse[0])
    return torch.cat(outs), torch.cat(lses, dim=-1)


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    residual: torch.Tensor | None = None,
    eps: float = 1e-6,
    dropout_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    rowscale: torch.Tensor | None = None,
    zero_centered_weight: bool = False,
    upcast: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, s): s = dropout(x * rowscale) + residual; y = s / rms(s) * w (+ b). Both float32 if upcast."""
    dtype = torch.float32 if upcast else x.dtype
    s = _pre_norm_sum(x, residual, dropout_mask, dropout_p, rowscale, dtype)
    rstd = torch.rsqrt(s.pow(2).mean(dim=-1, keepdim=True) + eps)
    return _affine(s * rstd, weight, bias, zero_centered_weight, dtype), s


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    residual: torch.Tensor | None = None,
    eps: float = 1e-6,
    dropout_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    rowscale: torch.Tensor | None = None,
    zero_centered_weight: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`rms_norm` with mean subtraction: y = (s - mean) / std * w (+ b)."""
    s = _pre_norm_sum(x, residual, dropout_mask, dropout_p, rowscale, torch.float32)
    centered = s - s.mean(dim=-1, keepdim=True)
    y = centered * torch.rsqrt(centered.pow(2).mean(dim=-1, keepdim=True) + eps)
    return _affine(y, weight, bias, zero_centered_weight, torch.float32), s


def _pre_norm_sum(x: torch.Tensor, residual: torch.Tensor | None, dropout_mask: torch.Tensor | None,
                  dropout_p: float, rowscale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """s = dropout(x * rowscale) + residual, in ``dtype``."""
    s = x.to(dtype)
    if rowscale is not None:
        s = s * rowscale.to(dtype)[..., None]
    if dropout_mask is not None:
        s = s * dropout_mask.to(dtype) / (1.0 - dropout_p)
    if residual is not None:
        s = s + residual.to(dtype)
    return s


def _affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, zero_centered: bool,
            dtype: torch.dtype) -> torch.Tensor:
    """y * w (+ b) in ``dtype``; a zero-centred weight stores w - 1."""
    if weight is not None:
        w = weight.to(dtype)
        y = y * (w + 1.0 if zero_centered else w)
    if bias is not None:
        y = y + bias.to(dtype)
    return y
