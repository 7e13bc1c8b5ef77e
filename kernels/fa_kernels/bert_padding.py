"""Between padded (batch, seqlen, ...) tensors and the packed (total, ...) ones the varlen functions take:
flash_attn.bert_padding's functions with its signatures, in plain PyTorch (differentiable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def index_first_axis(input: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """input[indices] along the first axis: (first, ...) -> (len(indices), ...)."""
    return input.index_select(0, indices)


def index_put_first_axis(values: torch.Tensor, indices: torch.Tensor, first_axis_dim: int) -> torch.Tensor:
    """Zeros (first_axis_dim, ...) with ``values`` scattered to rows ``indices``: the inverse of
    :func:`index_first_axis`. ``indices`` may be int32 or int64 (transformers passes both)."""
    out = values.new_zeros((first_axis_dim, *values.shape[1:]))
    return out.index_copy(0, indices.long(), values)


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                unused_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """hidden_states (batch, seqlen, ...), attention_mask (batch, seqlen) 1 = keep ->
    (hidden (total, ...), indices into the flattened (batch * seqlen), cu_seqlens (batch + 1,) int32,
    max_seqlen_in_batch, used_seqlens_in_batch (batch,) int32).

    ``unused_mask`` marks tokens that are kept (packed and counted in cu_seqlens) but not "used":
    used_seqlens_in_batch counts attention_mask alone.
    """
    kept = attention_mask + unused_mask if unused_mask is not None else attention_mask
    seqlens = kept.sum(dim=-1, dtype=torch.int32)
    used = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(kept.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max().item()) if seqlens.numel() else 0
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen, used


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """hidden_states (total, ...) back to (batch, seqlen, ...), zeros where nothing was packed."""
    out = index_put_first_axis(hidden_states, indices, batch * seqlen)
    return out.view(batch, seqlen, *hidden_states.shape[1:])
