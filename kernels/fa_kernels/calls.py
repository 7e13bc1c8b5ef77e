"""Plain descriptions of one op call, shared by every backend (no torch or triton import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttnProblem:
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

    @property
    def check_right(self) -> bool:
        return self.causal or self.window[1] >= 0

    @property
    def check_left(self) -> bool:
        return self.window[0] >= 0

    @property
    def win_right(self) -> int:
        return 0 if self.causal else max(self.window[1], 0)
