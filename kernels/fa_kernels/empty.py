"""Answers for empty attention calls (batch 0, no queries, no keys), as flash_attn gives them: out 0,
lse +inf, zero gradients. Computed by the plain-PyTorch reference, which handles zero-size dimensions
and keeps autograd connected, so no kernel is launched with an empty grid."""

from __future__ import annotations

from typing import Any

import torch

from fa_kernels import reference


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, varlen: bool,
              softmax_scale: float | None, return_attn_probs: bool) -> Any:
    if varlen:  # (total, heads, dim): with no queries or no keys, one packed "batch" answers the same
        out, lse = reference.attention(q[None], k[None], v[None], softmax_scale=softmax_scale)
        out, lse = out[0], lse[0]
    else:
        out, lse = reference.attention(q, k, v, softmax_scale=softmax_scale)
    out = out.to(q.dtype)
    if not return_attn_probs:
        return out
    probs = None
    if not varlen:
        batch, seqlen_q, heads, _ = q.shape
        probs = q.new_zeros((batch, heads, seqlen_q, k.shape[1]))
    return out, lse.detach(), probs
