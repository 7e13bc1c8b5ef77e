"""flash_attn.flash_attn_interface on fa_kernels (fa-dist's flash-attn compat, flash_attn 2.8.3's API).

The attention functions are fa_kernels' own when it has them; the signatures below are flash_attn's,
used by the stand-in that names the missing piece when this fa_kernels lacks one. The two varlen
packed variants are adapters over flash_attn_varlen_func, exactly as flash_attn defines them.
"""

from __future__ import annotations

from typing import Any

from flash_attn._fa_kernels import export, require

SOURCE = "fa_kernels"


def _flash_attn_func(
    q: Any,
    k: Any,
    v: Any,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> Any: ...


def _flash_attn_qkvpacked_func(
    qkv: Any,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> Any: ...


def _flash_attn_kvpacked_func(
    q: Any,
    kv: Any,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> Any: ...


def _flash_attn_varlen_func(
    q: Any,
    k: Any,
    v: Any,
    cu_seqlens_q: Any,
    cu_seqlens_k: Any,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
    block_table: Any = None,
) -> Any: ...


def _flash_attn_with_kvcache(
    q: Any,
    k_cache: Any,
    v_cache: Any,
    k: Any = None,
    v: Any = None,
    rotary_cos: Any = None,
    rotary_sin: Any = None,
    cache_seqlens: Any = None,
    cache_batch_idx: Any = None,
    cache_leftpad: Any = None,
    block_table: Any = None,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    rotary_interleaved: bool = True,
    alibi_slopes: Any = None,
    num_splits: int = 0,
    return_softmax_lse: bool = False,
) -> Any: ...


def flash_attn_varlen_qkvpacked_func(
    qkv: Any,
    cu_seqlens: Any,
    max_seqlen: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> Any:
    """qkv (total, 3, nheads, headdim); cu_seqlens int32 (batch + 1,)."""
    varlen = require(
        SOURCE, "flash_attn_varlen_func", f"{__name__}.flash_attn_varlen_qkvpacked_func"
    )
    q, k, v = qkv.unbind(dim=1)
    return varlen(
        q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p, softmax_scale, causal,
        window_size, softcap, alibi_slopes, deterministic, return_attn_probs,
    )  # fmt: skip


def flash_attn_varlen_kvpacked_func(
    q: Any,
    kv: Any,
    cu_seqlens_q: Any,
    cu_seqlens_k: Any,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Any = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> Any:
    """q (total_q, nheads, headdim), kv (total_k, 2, nheads_k, headdim)."""
    varlen = require(
        SOURCE, "flash_attn_varlen_func", f"{__name__}.flash_attn_varlen_kvpacked_func"
    )
    k, v = kv.unbind(dim=1)
    return varlen(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
        causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs,
    )  # fmt: skip


SIGNATURES = {
    "flash_attn_func": _flash_attn_func,
    "flash_attn_qkvpacked_func": _flash_attn_qkvpacked_func,
    "flash_attn_kvpacked_func": _flash_attn_kvpacked_func,
    "flash_attn_varlen_func": _flash_attn_varlen_func,
    "flash_attn_with_kvcache": _flash_attn_with_kvcache,
}
__getattr__, __dir__ = export(__name__, SOURCE, SIGNATURES)
__all__ = [*SIGNATURES, "flash_attn_varlen_kvpacked_func", "flash_attn_varlen_qkvpacked_func"]
