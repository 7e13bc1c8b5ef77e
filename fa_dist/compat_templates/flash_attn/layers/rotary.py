"""flash_attn.layers.rotary on fa_kernels.rotary (fa-dist's flash-attn compat): fa_kernels' own
apply_rotary_emb and RotaryEmbedding when it has them, else stand-ins with flash_attn's signatures
naming what is missing."""

from __future__ import annotations

import sys
from typing import Any

from flash_attn._fa_kernels import export


def _apply_rotary_emb(
    x: Any,
    cos: Any,
    sin: Any,
    interleaved: bool = False,
    inplace: bool = False,
    seqlen_offsets: Any = 0,
    cu_seqlens: Any = None,
    max_seqlen: int | None = None,
) -> Any: ...


class _RotaryEmbedding:
    """The rotary position embedding module (flash_attn.layers.rotary.RotaryEmbedding)."""

    def __init__(
        self,
        dim: int,
        base: float = 10000.0,
        interleaved: bool = False,
        scale_base: float | None = None,
        pos_idx_in_fp32: bool = True,
        device: Any = None,
    ) -> None: ...


SIGNATURES = {"apply_rotary_emb": _apply_rotary_emb, "RotaryEmbedding": _RotaryEmbedding}
ALIASES = {"apply_rotary_emb_func": "apply_rotary_emb"}  # flash_attn keeps this older name
_getattr, _dir = export(__name__, "fa_kernels.rotary", SIGNATURES)


def __getattr__(name: str) -> Any:
    if name in ALIASES:
        return getattr(sys.modules[__name__], ALIASES[name])
    return _getattr(name)


def __dir__() -> list[str]:
    return sorted({*_dir(), *ALIASES})


__all__ = [*SIGNATURES, *ALIASES]
