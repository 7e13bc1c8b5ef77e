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
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (b, s_q, h, d) in q's dtype-widened precision, lse (b, h, s_q)).

    ``dropout_mask`` (b, h, s_q, s_k), True = kept, applies dropout after the softmax with 1/(1-p)
    rescaling, as the kernels do. Rows with no allowed key give out 0 and lse +inf.
    """
    scores = attention_scores(q, k, softmax_scale=softmax_scale, causal=causal,
                              window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes)
    lse = torch.logsumexp(scores, dim=-1)
    empty = torch.isneginf(lse)
    probs = torch.exp(scores - lse.masked_fill(empty, 0.0)[..., None]).masked_fill(empty[..., None], 0.0)
    if dropout_mask is not None:
        probs = probs * dropout_mask.to(probs.dtype) / (1.0 - dropout_p)
    nheads, nheads_k = q.shape[2], v.shape[2]
    vv = v.to(probs.dtype).repeat_interleave(nheads // nheads_k, dim=2)
    out = torch.einsum("bhij,bjhd->bihd", probs, vv)
    return out, lse.masked_fill(empty, float("inf"))


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
