"""Rotary position embeddings with flash_attn.layers.rotary's API, in plain PyTorch (differentiable).

Pairs are (i, i + rotary_dim / 2) (GPT-NeoX) or, with ``interleaved``, (2i, 2i + 1) (GPT-J); only the
first rotary_dim = 2 * cos.shape[-1] dims turn. Math runs in float32 (or x's wider dtype) and lands in
x's dtype; positions past the cos/sin table are left unrotated, as flash_attn's kernel does.
"""

from __future__ import annotations

import torch


def _positions(x: torch.Tensor, seqlen_offsets: int | torch.Tensor, cu_seqlens: torch.Tensor | None
               ) -> torch.Tensor:
    """Each token's position: (batch, seqlen) for x (batch, seqlen, h, d), (total,) with cu_seqlens."""
    if cu_seqlens is None:
        pos = torch.arange(x.shape[1], device=x.device)[None, :]
        offsets = seqlen_offsets[:, None] if isinstance(seqlen_offsets, torch.Tensor) else seqlen_offsets
        return (pos + offsets).expand(x.shape[0], -1)
    token = torch.arange(x.shape[0], device=x.device)
    seq = torch.searchsorted(cu_seqlens[1:].long(), token, right=True)
    pos = token - cu_seqlens.long()[seq]
    if isinstance(seqlen_offsets, torch.Tensor):
        return pos + seqlen_offsets.long()[seq]
    return pos + seqlen_offsets


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pos: torch.Tensor,
            interleaved: bool) -> torch.Tensor:
    """The first rotary_dim dims of x (..., h, d) turned by the angles at ``pos`` (x.shape[:-2])."""
    half = cos.shape[-1]
    wide = torch.promote_types(x.dtype, torch.float32)
    inside = (pos < cos.shape[0])[..., None, None]
    at = pos.clamp(max=cos.shape[0] - 1)
    c = torch.where(inside, cos.to(wide)[at][..., None, :], 1.0)
    s = torch.where(inside, sin.to(wide)[at][..., None, :], 0.0)
    part = x[..., :2 * half].to(wide)
    if interleaved:
        a, b = part[..., 0::2], part[..., 1::2]
        turned = torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
    else:
        a, b = part[..., :half], part[..., half:]
        turned = torch.cat((a * c - b * s, a * s + b * c), dim=-1)
    return turned.to(x.dtype)


def apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False,
                     inplace: bool = False, seqlen_offsets: int | torch.Tensor = 0,
                     cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None) -> torch.Tensor:
    """x (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens; cos, sin
    (seqlen_rotary, rotary_dim / 2); seqlen_offsets: int or (batch,), each sequence's first position.
    -> x rotated (x itself, written in place, when ``inplace``). ``max_seqlen`` is accepted for
    flash_attn's signature; the positions come from cu_seqlens."""
    rot = 2 * cos.shape[-1]
    if rot > x.shape[-1]:
        raise ValueError(f"rotary_dim={rot} exceeds headdim={x.shape[-1]}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos {tuple(cos.shape)} and sin {tuple(sin.shape)} differ")
    turned = _rotate(x, cos, sin, _positions(x, seqlen_offsets, cu_seqlens), interleaved)
    if inplace:
        x[..., :rot].copy_(turned)
        return x
    return torch.cat((turned, x[..., rot:]), dim=-1)


apply_rotary_emb_func = apply_rotary_emb


def apply_rotary_emb_qkv_(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          cos_k: torch.Tensor | None = None, sin_k: torch.Tensor | None = None,
                          interleaved: bool = False, seqlen_offsets: int | torch.Tensor = 0,
                          num_heads_q: int | None = None) -> torch.Tensor:
    """Rotate q and k of qkv in place: (batch, seqlen, 3, nheads, headdim), or (batch, seqlen,
    num_heads_q + 2 * num_heads_k, headdim) with num_heads_q (GQA). cos_k/sin_k: k's tables if they
    differ (XPos)."""
    if qkv.dim() == 5:
        if qkv.shape[2] != 3:
            raise ValueError(f"qkv must be (batch, seqlen, 3, nheads, headdim), got {tuple(qkv.shape)}")
        q, k = qkv[:, :, 0], qkv[:, :, 1]
    else:
        if num_heads_q is None or (qkv.shape[2] - num_heads_q) % 2:
            raise ValueError("a 4-D qkv (batch, seqlen, num_heads_q + 2 * num_heads_k, headdim) needs num_heads_q")
        num_heads_k = (qkv.shape[2] - num_heads_q) // 2
        q, k = qkv[:, :, :num_heads_q], qkv[:, :, num_heads_q:num_heads_q + num_heads_k]
    apply_rotary_emb(q, cos, sin, interleaved, True, seqlen_offsets)
    apply_rotary_emb(k, cos if cos_k is None else cos_k, sin if sin_k is None else sin_k, interleaved, True,
                     seqlen_offsets)
    return qkv


def apply_rotary_emb_kv_(kv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False,
                         seqlen_offsets: int | torch.Tensor = 0) -> torch.Tensor:
    """Rotate k of kv (batch, seqlen, 2, nheads, headdim) in place."""
    if kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(f"kv must be (batch, seqlen, 2, nheads, headdim), got {tuple(kv.shape)}")
    apply_rotary_emb(kv[:, :, 0], cos, sin, interleaved, True, seqlen_offsets)
    return kv


class RotaryEmbedding(torch.nn.Module):
    """RoPE (RoFormer), or XPos when ``scale_base`` is set (k's tables divided by the scale q's are
    multiplied by). ``forward`` rotates qkv (and kv) in place; cos/sin tables are cached per length."""

    # buffers (register_buffer): declared so they read as tensors, not as nn.Module's attribute fallback
    inv_freq: torch.Tensor
    scale: torch.Tensor | None

    def __init__(self, dim: int, base: float = 10000.0, interleaved: bool = False,
                 scale_base: float | None = None, pos_idx_in_fp32: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.dim, self.base = dim, float(base)
        self.interleaved, self.scale_base, self.pos_idx_in_fp32 = interleaved, scale_base, pos_idx_in_fp32
        self.register_buffer("inv_freq", self._inv_freq(device), persistent=False)
        scale = self._scale(device) if scale_base is not None else None
        self.register_buffer("scale", scale, persistent=False)
        self._seq_len_cached = 0
        self._cos_cached: torch.Tensor | None = None
        self._sin_cached: torch.Tensor | None = None
        self._cos_k_cached: torch.Tensor | None = None
        self._sin_k_cached: torch.Tensor | None = None

    def _inv_freq(self, device: torch.device | str | None) -> torch.Tensor:
        exponent = torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim
        return 1.0 / (self.base ** exponent)

    def _scale(self, device: torch.device | str | None) -> torch.Tensor:
        return (torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) + 0.4 * self.dim) / (1.4 * self.dim)

    def _update_cos_sin_cache(self, seqlen: int, device: torch.device | None = None,
                              dtype: torch.dtype | None = None) -> None:
        cached = self._cos_cached
        if (cached is not None and seqlen <= self._seq_len_cached and cached.device == device
                and cached.dtype == dtype and not (self.training and cached.is_inference())):
            return
        self._seq_len_cached = seqlen
        # positions in float32: large positions times the frequencies lose too much in 16 bits
        inv_freq = self.inv_freq if self.inv_freq.dtype == torch.float32 else self._inv_freq(device)
        t_dtype = torch.float32 if self.pos_idx_in_fp32 else self.inv_freq.dtype
        t = torch.arange(seqlen, device=device, dtype=t_dtype)
        freqs = torch.outer(t, inv_freq.to(device=device, dtype=t_dtype)).float()
        if self.scale is None or self.scale_base is None:  # both are set together, in __init__
            self._cos_cached, self._sin_cached = freqs.cos().to(dtype), freqs.sin().to(dtype)
            return
        power = (torch.arange(seqlen, dtype=torch.float32, device=device) - seqlen // 2) / self.scale_base
        scale = self._scale(device) ** power[:, None]
        self._cos_cached, self._sin_cached = (freqs.cos() * scale).to(dtype), (freqs.sin() * scale).to(dtype)
        self._cos_k_cached, self._sin_k_cached = (freqs.cos() / scale).to(dtype), (freqs.sin() / scale).to(dtype)

    def forward(self, qkv: torch.Tensor, kv: torch.Tensor | None = None,
                seqlen_offset: int | torch.Tensor = 0, max_seqlen: int | None = None,
                num_heads_q: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """qkv (batch, seqlen, 3, nheads, headdim) or (batch, seqlen, num_heads_q + 2 * num_heads_k,
        headdim); or q (batch, seqlen, nheads, headdim) with kv (batch, seqlen, 2, nheads, headdim).
        A tensor seqlen_offset (batch,) needs max_seqlen to size the tables."""
        if max_seqlen is not None:
            self._update_cos_sin_cache(max_seqlen, device=qkv.device, dtype=qkv.dtype)
        elif isinstance(seqlen_offset, int):
            self._update_cos_sin_cache(qkv.shape[1] + seqlen_offset, device=qkv.device, dtype=qkv.dtype)
        cos, sin = self._cos_cached, self._sin_cached
        if cos is None or sin is None:
            raise ValueError("a tensor seqlen_offset needs max_seqlen (the length to build cos/sin for)")
        xpos = self.scale is not None
        cos_k, sin_k = (self._cos_k_cached, self._sin_k_cached) if xpos else (None, None)
        if kv is None:
            return apply_rotary_emb_qkv_(qkv, cos, sin, cos_k, sin_k, interleaved=self.interleaved,
                                         seqlen_offsets=seqlen_offset, num_heads_q=num_heads_q)
        q = apply_rotary_emb(qkv, cos, sin, self.interleaved, True, seqlen_offset)
        kv = apply_rotary_emb_kv_(kv, cos_k if cos_k is not None else cos, sin_k if sin_k is not None else sin,
                                  self.interleaved, seqlen_offset)
        return q, kv
