"""Plain descriptions of one op call, shared by every backend (no torch or triton import)."""

from __future__ import annotations

from dataclasses import dataclass


class _Masks:
    """Which sides of the (bottom-right aligned) causal/sliding-window mask a call checks."""

    causal: bool
    window: tuple[int, int]

    @property
    def check_right(self) -> bool:
        return self.causal or self.window[1] >= 0

    @property
    def check_left(self) -> bool:
        return self.window[0] >= 0

    @property
    def win_right(self) -> int:
        return 0 if self.causal else max(self.window[1], 0)


@dataclass(frozen=True)
class AttnProblem(_Masks):
    """Everything the kernels need besides tensors; one value per call."""

    batch: int
    nheads: int
    nheads_k: int
    head_dim: int
    max_seqlen_q: int
    max_seqlen_k: int
    softmax_scale: float
    causal: bool
    window: tuple[int, int]
    softcap: float
    dropout_p: float
    varlen: bool


@dataclass(frozen=True)
class CacheAttnProblem(_Masks):
    """Attention of new queries over a KV cache (flash_attn_with_kvcache, or varlen with a block table).

    ``capacity``: the most keys one sequence's cache can hold; ``page_size`` 0 means a contiguous
    cache; ``seqlen_new``: keys appended this call (counted into every sequence's length);
    ``keys_from_cu``: the sequences' key counts come from cu_seqlens_k (paged varlen).
    """

    batch: int
    nheads: int
    nheads_k: int
    head_dim: int
    max_seqlen_q: int
    capacity: int
    seqlen_new: int
    softmax_scale: float
    causal: bool
    window: tuple[int, int]
    softcap: float
    num_splits: int
    page_size: int
    varlen_q: bool
    keys_from_cu: bool

    @property
    def group(self) -> int:
        return self.nheads // self.nheads_k
