"""Launchers for the KV-cache kernels: append (with rotary), split-KV attention, and the combine."""

from __future__ import annotations

import functools

import torch

from fa_kernels import _alloc
from fa_kernels.calls import CacheAttnProblem
from fa_kernels.intmath import cdiv, next_pow2
from fa_kernels.triton import decode_kernels as K
from fa_kernels.triton.attention import Config, _lse_strides, _strides3, block_d, interpreting

MAX_SPLITS = 128
# a split reads at least this many key tiles, so the partial results it writes and the combine
# reads stay small next to the keys
MIN_TILES_PER_SPLIT = 2
# CTAs to aim for when splitting (the grid covers fewer SMs than the GPU has): two an SM
CTAS_PER_SM = 2


def config(p: CacheAttnProblem, device: torch.device) -> Config:
    """Tile sizes: rows are (query, head) pairs of one KV head, so one decoded token with GQA 8:1
    fills half of a 16-row tile. With 3 stages two K/V tiles are in flight a CTA (64 KB at head dim
    128), and 3 CTAs fit an SM: far more than the bytes in flight HBM needs. Paged caches pipeline the
    same (their page indices are read a tile ahead)."""
    rows = p.max_seqlen_q * p.group
    block_m = 16 if rows <= 16 else 32 if rows <= 32 else 64
    if interpreting() or device.type != "cuda":
        return Config(16, 32, 4, 1)
    if block_d(p.head_dim) > 128:
        return Config(min(block_m, 32), 32, 4, 3)
    return Config(block_m, 64, 4, 3)


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """SMs of the device; under the CPU interpreter a small stand-in so the heuristic still splits."""
    if device.type != "cuda":
        return 4
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def num_splits(ctas: int, key_tiles: int, sms: int, requested: int = 0) -> int:
    """How many CTAs share one (sequence, KV head, row block)'s keys (flash-decoding).

    ``ctas``: CTAs without splitting; ``key_tiles``: key tiles of the longest sequence. A request
    (flash_attn's num_splits > 0) is honoured up to MAX_SPLITS and the number of tiles; 0 asks for the
    heuristic: split only when the grid leaves SMs idle, up to CTAS_PER_SM CTAs an SM, keeping
    MIN_TILES_PER_SPLIT tiles each.
    """
    most = max(1, min(MAX_SPLITS, key_tiles))
    if requested > 0:
        return min(requested, most)
    if ctas >= sms:
        return 1
    wanted = int(cdiv(CTAS_PER_SM * sms, ctas))
    return max(1, min(wanted, key_tiles // MIN_TILES_PER_SPLIT, MAX_SPLITS))


def append(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor | None,
           v: torch.Tensor | None, p: CacheAttnProblem, *, seqlens: torch.Tensor,
           cache_idx: torch.Tensor | None, block_table: torch.Tensor | None,
           cos: torch.Tensor | None, sin: torch.Tensor | None, interleaved: bool) -> torch.Tensor:
    """Write k (rotated) and v into the caches at cache_seqlens, in place; -> q, rotated if cos given."""
    rotate = cos is not None
    q_out = _alloc.empty_like(q) if rotate else q
    block_h = min(16, next_pow2(p.nheads))
    grid = (p.batch, max(p.max_seqlen_q if rotate else 0, p.seqlen_new), cdiv(p.nheads, block_h))
    kn, vn = (k, v) if k is not None and v is not None else (k_cache, v_cache)  # unused when not appending
    cos_t, sin_t = (cos, sin) if cos is not None and sin is not None else (k_cache, k_cache)
    K._append_kernel[grid](
        q, q_out, kn, vn, k_cache, v_cache, cos_t, sin_t, seqlens, cache_idx, block_table,
        *_strides3(q), *_strides3(q_out), *_strides3(kn), *_strides3(vn),
        *_strides3(k_cache), *_strides3(v_cache),
        cos_t.stride(0), block_table.stride(0) if block_table is not None else 0,
        p.max_seqlen_q, p.seqlen_new, cos_t.shape[0] if rotate else 0, p.capacity, max(p.page_size, 1),
        p.nheads, p.nheads_k,
        HEAD_DIM=p.head_dim, BLOCK_D=block_d(p.head_dim), BLOCK_H=block_h,
        ROT_DIM=2 * cos.shape[1] if cos is not None else 0, INTERLEAVED=interleaved,
        ROTATE_Q=rotate, Q_AT_EACH_ROW=p.causal or p.check_left or p.check_right,
        APPEND=k is not None, PAGED=p.page_size > 0, HAS_CACHE_IDX=cache_idx is not None,
    )
    return q_out


def _outputs(q: torch.Tensor, p: CacheAttnProblem, splits: int) -> tuple[torch.Tensor, ...]:
    """(out, lse) in flash_attn's layouts, and the float32 partials when the keys are split."""
    if p.varlen_q:
        lse = _alloc.empty((p.nheads, q.shape[0]), dtype=torch.float32, device=q.device)
    else:
        lse = _alloc.empty((p.batch, p.nheads, p.max_seqlen_q), dtype=torch.float32, device=q.device)
    out = _alloc.empty_like(q)
    if splits == 1:
        return out, lse, out, lse
    part_o = _alloc.empty((splits, *q.shape), dtype=torch.float32, device=q.device)
    part_l = _alloc.empty((splits, *lse.shape), dtype=torch.float32, device=q.device)
    return out, lse, part_o, part_l


def attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, p: CacheAttnProblem, *,
           seqlens_k: torch.Tensor, k_starts: torch.Tensor | None, cache_idx: torch.Tensor | None,
           block_table: torch.Tensor | None, cu_q: torch.Tensor | None, alibi: torch.Tensor | None,
           s_aux: torch.Tensor | None, cfg: Config | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q over the caches -> (out like q, lse (b, h, s_q) or (h, total_q))."""
    cfg = cfg or config(p, q.device)
    row_blocks = cdiv(p.max_seqlen_q * p.group, cfg.block_m)
    ctas = row_blocks * p.batch * p.nheads_k
    splits = num_splits(ctas, cdiv(p.capacity, cfg.block_n), sm_count(q.device), p.num_splits)
    out, lse, o_buf, l_buf = _outputs(q, p, splits)
    partial = splits > 1
    K._cache_attn_kernel[(row_blocks, p.batch * p.nheads_k, splits)](
        q, k_cache, v_cache, o_buf, l_buf, seqlens_k, k_starts, cache_idx, block_table, cu_q, alibi,
        s_aux, p.softmax_scale, p.softcap if p.softcap > 0 else 1.0, max(p.window[0], 0), p.win_right,
        p.seqlen_new, splits, *_strides3(q), *_strides3(k_cache), *_strides3(v_cache),
        o_buf.stride(0) if partial else 0, *_strides3(o_buf[0] if partial else o_buf),
        l_buf.stride(0) if partial else 0, *_lse_strides(l_buf[0] if partial else l_buf),
        block_table.stride(0) if block_table is not None else 0,
        alibi.stride(0) if alibi is not None and alibi.dim() == 2 else 0,
        p.nheads_k, p.group, p.max_seqlen_q, max(p.page_size, 1),
        HEAD_DIM=p.head_dim, BLOCK_D=block_d(p.head_dim), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        IS_VARLEN_Q=p.varlen_q, K_FROM_CU=p.keys_from_cu, PAGED=p.page_size > 0,
        TILE_IN_PAGE=p.page_size % cfg.block_n == 0,
        HAS_LEFTPAD=k_starts is not None, HAS_CACHE_IDX=cache_idx is not None,
        CHECK_LEFT=p.check_left, CHECK_RIGHT=p.check_right, HAS_SOFTCAP=p.softcap > 0,
        HAS_ALIBI=alibi is not None, HAS_SINK=s_aux is not None, PARTIAL=partial,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    if partial:
        _combine(o_buf, l_buf, out, lse, s_aux, p, splits)
    return out, lse


def _combine(o_buf: torch.Tensor, l_buf: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
             s_aux: torch.Tensor | None, p: CacheAttnProblem, splits: int) -> None:
    tokens = out.shape[0] if p.varlen_q else p.batch * p.max_seqlen_q
    K._combine_kernel[(tokens, p.nheads)](
        o_buf, l_buf, out, lse, s_aux, splits,
        o_buf.stride(0), *_strides3(o_buf[0]), l_buf.stride(0), *_lse_strides(l_buf[0]),
        *_strides3(out), *_lse_strides(lse),
        # varlen: every token is row `tok` of "batch" 0
        tokens + 1 if p.varlen_q else p.max_seqlen_q,
        HEAD_DIM=p.head_dim, BLOCK_D=block_d(p.head_dim), BLOCK_S=next_pow2(splits),
        HAS_SINK=s_aux is not None, num_warps=4 if splits <= 32 else 8,
    )
