"""flash_attn.bert_padding on fa_kernels.bert_padding (fa-dist's flash-attn compat): fa_kernels' own
functions when it has them, else stand-ins with flash_attn's signatures naming what is missing."""

from __future__ import annotations

from typing import Any

from flash_attn._fa_kernels import export


def _index_first_axis(input: Any, indices: Any) -> Any: ...


def _index_put_first_axis(values: Any, indices: Any, first_axis_dim: int) -> Any: ...


def _unpad_input(hidden_states: Any, attention_mask: Any, unused_mask: Any = None) -> Any: ...


def _pad_input(hidden_states: Any, indices: Any, batch: int, seqlen: int) -> Any: ...


SIGNATURES = {
    "index_first_axis": _index_first_axis,
    "index_put_first_axis": _index_put_first_axis,
    "pad_input": _pad_input,
    "unpad_input": _unpad_input,
}
__getattr__, __dir__ = export(__name__, "fa_kernels.bert_padding", SIGNATURES)
__all__ = list(SIGNATURES)
