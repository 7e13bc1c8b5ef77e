"""Attention over a KV cache in Triton: the in-place append of new keys/values (with rotary), and a
forward kernel that splits the keys of one (sequence, KV head) across CTAs (flash-decoding).

Rows: the query heads that share a KV head are packed into the M dimension as (query, head) pairs, so
a K/V tile is read once per KV head whatever the GQA group, and one decoded token with GQA 8:1 fills 8
of 16 MMA rows instead of 1.
Caches are contiguous (batch, seqlen, nheads_k, head_dim) or paged (num_blocks, page_size, nheads_k,
head_dim) through a block table; a key's row is found per key, so any page size works.
Key positions are absolute cache indices; masks, ALiBi and the causal diagonal use positions relative
to the sequence's first key (cache_leftpad), as flash_attn does.
With several splits each CTA writes its normalised partial output and log-sum-exp (float32), and
_combine_kernel merges them; the attention sink (s_aux) enters as one more denominator term there, or
in the epilogue when the keys are not split.
"""

from __future__ import annotations

import triton
import triton.language as tl

from fa_kernels.triton.attention_kernels import LN2, LOG2E, _logits2, _with_sink

# do_not_specialize below: as attention_kernels._SCALARS, sizes and counts that vary per call (cache
# lengths, splits, heads) compile once, not once per value class


@triton.jit
def _rotated(ptrs, offs_d, rows_ok, pos, COS, SIN, stride_cos, seqlen_ro,
             HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROT_DIM: tl.constexpr,
             INTERLEAVED: tl.constexpr):
    """Rows at ``ptrs`` ([rows, 1] pointers) in float32, the first ROT_DIM dims rotated by the angle
    of ``pos``; positions past the cos/sin table stay unrotated (flash_attn's apply_rotary does so)."""
    d_ok = offs_d < HEAD_DIM
    mask = rows_ok[:, None] & d_ok[None, :]
    x = tl.load(ptrs + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    if ROT_DIM > 0:
        if INTERLEAVED:  # pairs (0, 1), (2, 3), ...
            first = (offs_d % 2) == 0
            partner = offs_d ^ 1
            freq = offs_d // 2
        else:  # pairs (i, i + ROT_DIM / 2), GPT-NeoX style
            first = offs_d < ROT_DIM // 2
            partner = tl.where(first, offs_d + ROT_DIM // 2, offs_d - ROT_DIM // 2)
            freq = tl.where(first, offs_d, offs_d - ROT_DIM // 2)
        rot = offs_d < ROT_DIM
        xp = tl.load(ptrs + partner[None, :], mask=rows_ok[:, None] & rot[None, :], other=0.0)
        in_table = rot & (pos < seqlen_ro)
        cos = tl.load(COS + pos * stride_cos + freq, mask=in_table, other=1.0).to(tl.float32)
        sin = tl.load(SIN + pos * stride_cos + freq, mask=in_table, other=0.0).to(tl.float32)
        sin = tl.where(first, -sin, sin)
        x = x * cos[None, :] + xp.to(tl.float32) * sin[None, :]
    return x


@triton.jit
def _cache_rows(b, pos, CACHE_IDX, BLOCK_TABLE, stride_cb, stride_cs, stride_bt, page_size,
                PAGED: tl.constexpr, HAS_CACHE_IDX: tl.constexpr):
    """Element offset (int64) of the cache row that holds absolute position ``pos`` of sequence b."""
    # one return at the end: Triton compiles early returns only at a kernel's top level
    if PAGED:
        page = tl.load(BLOCK_TABLE + b.to(tl.int64) * stride_bt + pos // page_size).to(tl.int64)
        row = page * stride_cb + (pos % page_size).to(tl.int64) * stride_cs
    else:
        cb = b
        if HAS_CACHE_IDX:
            cb = tl.load(CACHE_IDX + b)
        row = cb.to(tl.int64) * stride_cb + pos.to(tl.int64) * stride_cs
    return row


@triton.jit(do_not_specialize=("stride_cos", "stride_bt", "seqlen_q", "seqlen_new", "seqlen_ro", "capacity", "page_size", "nheads", "nheads_k"))
def _append_kernel(
    Q, QR, KN, VN, KC, VC, COS, SIN, SEQLENS, CACHE_IDX, BLOCK_TABLE,
    stride_qb, stride_qs, stride_qh, stride_rb, stride_rs, stride_rh,
    stride_knb, stride_kns, stride_knh, stride_vnb, stride_vns, stride_vnh,
    stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
    stride_cos, stride_bt, seqlen_q, seqlen_new, seqlen_ro, capacity, page_size, nheads, nheads_k,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, ROT_DIM: tl.constexpr,
    INTERLEAVED: tl.constexpr, ROTATE_Q: tl.constexpr, Q_AT_EACH_ROW: tl.constexpr,
    APPEND: tl.constexpr, PAGED: tl.constexpr, HAS_CACHE_IDX: tl.constexpr,
):
    """One token t of sequence b, BLOCK_H heads: q rotated into QR; new k (rotated) and v written into
    the caches at position cache_seqlens[b] + t. Positions past the cache's capacity are not written."""
    b = tl.program_id(0)
    t = tl.program_id(1)
    offs_h = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    start = tl.load(SEQLENS + b)
    if ROTATE_Q:
        if t < seqlen_q:
            q_pos = start
            if Q_AT_EACH_ROW:
                q_pos = start + t
            rows = offs_h < nheads
            src = Q + b.to(tl.int64) * stride_qb + t * stride_qs + offs_h * stride_qh
            x = _rotated(src[:, None], offs_d, rows, q_pos, COS, SIN, stride_cos, seqlen_ro,
                         HEAD_DIM, BLOCK_D, ROT_DIM, INTERLEAVED)
            dst = QR + b.to(tl.int64) * stride_rb + t * stride_rs + offs_h * stride_rh
            tl.store(dst[:, None] + offs_d[None, :], x.to(QR.dtype.element_ty),
                     mask=rows[:, None] & d_ok[None, :])
    if APPEND:
        if t < seqlen_new:
            pos = start + t
            rows = (offs_h < nheads_k) & (pos < capacity)
            k_src = KN + b.to(tl.int64) * stride_knb + t * stride_kns + offs_h * stride_knh
            k = _rotated(k_src[:, None], offs_d, rows, pos, COS, SIN, stride_cos, seqlen_ro,
                         HEAD_DIM, BLOCK_D, ROT_DIM, INTERLEAVED)
            v_src = VN + b.to(tl.int64) * stride_vnb + t * stride_vns + offs_h * stride_vnh
            mask = rows[:, None] & d_ok[None, :]
            v = tl.load(v_src[:, None] + offs_d[None, :], mask=mask, other=0.0)
            k_row = _cache_rows(b, pos, CACHE_IDX, BLOCK_TABLE, stride_kcb, stride_kcs, stride_bt,
                                page_size, PAGED, HAS_CACHE_IDX)
            v_row = _cache_rows(b, pos, CACHE_IDX, BLOCK_TABLE, stride_vcb, stride_vcs, stride_bt,
                                page_size, PAGED, HAS_CACHE_IDX)
            tl.store(KC + k_row + offs_h[:, None] * stride_kch + offs_d[None, :],
                     k.to(KC.dtype.element_ty), mask=mask)
            tl.store(VC + v_row + offs_h[:, None] * stride_vch + offs_d[None, :], v, mask=mask)


@triton.jit
def _seq_keys(SEQLENS_K, K_STARTS, b, seqlen_new, K_FROM_CU: tl.constexpr, HAS_LEFTPAD: tl.constexpr):
    """(first key's absolute position, number of keys) of sequence b."""
    kstart = 0
    if K_FROM_CU:  # paged varlen: cu_seqlens_k gives each sequence's length, keys start at 0
        sk = tl.load(SEQLENS_K + b + 1) - tl.load(SEQLENS_K + b)
    else:
        if HAS_LEFTPAD:
            kstart = tl.load(K_STARTS + b)
        sk = tl.load(SEQLENS_K + b) + seqlen_new - kstart
    return kstart, sk


@triton.jit
def _split_range(start_r, sq, sk, kstart, group, win_left, win_right, split, num_splits,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr):
    """Absolute key positions [lo, hi) this split reads: the row block's visible keys, in tiles aligned
    to absolute positions (so a tile never crosses a page when BLOCK_N divides the page size)."""
    diag = sk - sq
    vis_lo = 0
    vis_hi = sk
    if CHECK_RIGHT:
        i_last = tl.minimum((start_r + BLOCK_M - 1) // group, sq - 1)
        vis_hi = tl.minimum(sk, i_last + diag + win_right + 1)
    if CHECK_LEFT:
        vis_lo = tl.maximum(0, start_r // group + diag - win_left)
    first = (kstart + vis_lo) // BLOCK_N * BLOCK_N
    end = kstart + tl.maximum(vis_hi, vis_lo)
    per_split = tl.cdiv(tl.cdiv(end - first, BLOCK_N), num_splits) * BLOCK_N
    lo = first + split * per_split
    return lo, tl.minimum(end, lo + per_split)


@triton.jit
def _pages(bt_row, start, offs_n, end, page_size, TILE_IN_PAGE: tl.constexpr):
    """Block-table entries (int64) of the keys at absolute positions start + offs_n (< end): one
    scalar when the tile lies in one page (BLOCK_N divides the page size), else one per key."""
    if TILE_IN_PAGE:
        pages = tl.load(bt_row + start // page_size, mask=start < end, other=0).to(tl.int64)
    else:
        pos = start + offs_n
        pages = tl.load(bt_row + pos // page_size, mask=pos < end, other=0).to(tl.int64)
    return pages


@triton.jit
def _kv_offsets(pages, start, offs_n, stride_b, stride_s, page_size, PAGED: tl.constexpr,
                TILE_IN_PAGE: tl.constexpr):
    """Element offsets (int64, [BLOCK_N]) of the keys at absolute positions start + offs_n, from the
    sequence's base (contiguous) or, through their pages, from the cache's start (paged)."""
    if PAGED:
        if TILE_IN_PAGE:
            offs = pages * stride_b + ((start % page_size) + offs_n).to(tl.int64) * stride_s
        else:
            offs = pages * stride_b + ((start + offs_n) % page_size).to(tl.int64) * stride_s
    else:
        offs = (start + offs_n).to(tl.int64) * stride_s
    return offs


@triton.jit(do_not_specialize=("win_left", "win_right", "seqlen_new", "num_splits", "stride_lsp", "stride_lb", "stride_lh", "stride_bt", "stride_slb", "nheads_k", "group", "seqlen_q", "page_size"))
def _cache_attn_kernel(
    Q, K, V, O, LSE, SEQLENS_K, K_STARTS, CACHE_IDX, BLOCK_TABLE, CU_Q, SLOPES, SINK,
    sm_scale, softcap, win_left, win_right, seqlen_new, num_splits,
    stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
    stride_osp, stride_ob, stride_os, stride_oh, stride_lsp, stride_lb, stride_lh,
    stride_bt, stride_slb, nheads_k, group, seqlen_q, page_size,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN_Q: tl.constexpr, K_FROM_CU: tl.constexpr, PAGED: tl.constexpr, TILE_IN_PAGE: tl.constexpr,
    HAS_LEFTPAD: tl.constexpr, HAS_CACHE_IDX: tl.constexpr, CHECK_LEFT: tl.constexpr,
    CHECK_RIGHT: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr,
    HAS_SINK: tl.constexpr, PARTIAL: tl.constexpr,
):
    """Grid (row blocks, batch * nheads_k, splits). With PARTIAL, O/LSE are the float32 partial
    buffers (split stride first) and hold each split's normalised output and log-sum-exp."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    split = tl.program_id(2)
    b = pid_bh // nheads_k
    kh = pid_bh % nheads_k
    q0 = 0
    sq = seqlen_q
    if IS_VARLEN_Q:
        q0 = tl.load(CU_Q + b)
        sq = tl.load(CU_Q + b + 1) - q0
    start_r = pid_m * BLOCK_M
    if start_r >= sq * group:
        return
    kstart, sk = _seq_keys(SEQLENS_K, K_STARTS, b, seqlen_new, K_FROM_CU, HAS_LEFTPAD)
    diag = sk - sq
    rows = start_r + tl.arange(0, BLOCK_M)
    qi = rows // group
    h = kh * group + rows % group
    row_ok = qi < sq
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < HEAD_DIM
    q_rows = (q0 + qi).to(tl.int64) * stride_qs + h * stride_qh
    q = tl.load(Q + b.to(tl.int64) * stride_qb + q_rows[:, None] + offs_d[None, :],
                mask=row_ok[:, None] & d_ok, other=0.0)
    slope = tl.zeros([BLOCK_M], tl.float32)
    if HAS_ALIBI:
        slope = tl.load(SLOPES + b * stride_slb + h).to(tl.float32)
    lo, hi = _split_range(start_r, sq, sk, kstart, group, win_left, win_right, split, num_splits,
                          BLOCK_M, BLOCK_N, CHECK_LEFT, CHECK_RIGHT)
    bt_row = BLOCK_TABLE
    k_seq = K + kh * stride_kh
    v_seq = V + kh * stride_vh
    if PAGED:
        bt_row += b.to(tl.int64) * stride_bt
    else:
        cb = b
        if HAS_CACHE_IDX:
            cb = tl.load(CACHE_IDX + b)
        k_seq += cb.to(tl.int64) * stride_kb
        v_seq += cb.to(tl.int64) * stride_vb

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    if PAGED:
        # each tile's pages are read one iteration ahead: a page index loaded inside an iteration
        # would take a stage of the software pipeline, leaving fewer K/V tiles in flight
        pages_next = _pages(bt_row, lo, offs_n, hi, page_size, TILE_IN_PAGE)
    for start_n in tl.range(lo, hi, BLOCK_N):
        pages = 0
        if PAGED:
            pages = pages_next
            pages_next = _pages(bt_row, start_n + BLOCK_N, offs_n, hi, page_size, TILE_IN_PAGE)
        cols = start_n + offs_n - kstart  # relative to the sequence's first key
        key_ok = start_n + offs_n < hi
        if HAS_LEFTPAD:  # the first tile, aligned down, may start before the sequence
            key_ok = key_ok & (cols >= 0)
        if HEAD_DIM == BLOCK_D:  # a mask uniform along head_dim keeps the loads 16 bytes wide
            kv_ok = key_ok[:, None]
        else:
            kv_ok = key_ok[:, None] & d_ok
        k_rows = _kv_offsets(pages, start_n, offs_n, stride_kb, stride_ks, page_size, PAGED, TILE_IN_PAGE)
        k = tl.load(k_seq + k_rows[:, None] + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k))
        s, _ = _logits2(qk, qi[:, None], cols[None, :], sm_scale, softcap, slope[:, None], diag,
                        win_left, win_right, hi - kstart, True, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP,
                        HAS_ALIBI)
        if HAS_LEFTPAD:
            s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_rows = _kv_offsets(pages, start_n, offs_n, stride_vb, stride_vs, page_size, PAGED, TILE_IN_PAGE)
        v = tl.load(v_seq + v_rows[:, None] + offs_d[None, :], mask=kv_ok, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    if HAS_SINK and not PARTIAL:  # split: the combine kernel adds the sink
        acc, l_i, m_i = _with_sink(acc, l_i, m_i, tl.load(SINK + h).to(tl.float32) * LOG2E)
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    # a split that saw no key weighs nothing in the combine (-inf); a row that saw none is +inf
    no_key = float("inf")
    if PARTIAL:
        no_key = float("-inf")
    lse = tl.where(empty, no_key, (m_i + tl.math.log2(l_safe)) * LN2)
    o_rows = split * stride_osp + b.to(tl.int64) * stride_ob + (q0 + qi).to(tl.int64) * stride_os
    tl.store(O + (o_rows + h * stride_oh)[:, None] + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & d_ok)
    l_rows = split * stride_lsp + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q0 + qi
    tl.store(LSE + l_rows, lse, mask=row_ok)


@triton.jit(do_not_specialize=("num_splits", "stride_lsp", "stride_lpb", "stride_lph", "stride_lb", "stride_lh", "seqlen_q"))
def _combine_kernel(
    OP, LP, O, LSE, SINK, num_splits,
    stride_psp, stride_pb, stride_ps, stride_ph, stride_lsp, stride_lpb, stride_lph,
    stride_ob, stride_os, stride_oh, stride_lb, stride_lh, seqlen_q,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, HAS_SINK: tl.constexpr,
):
    """One (token, head): out = sum_s exp(lse_s - lse) out_s, lse = logsumexp_s lse_s (+ the sink).
    Tokens are (batch, seqlen_q) row-major; varlen layouts pass seqlen_q larger than any token."""
    tok = tl.program_id(0)
    h = tl.program_id(1)
    b = tok // seqlen_q
    i = tok % seqlen_q
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < num_splits
    lse_s = tl.load(LP + offs_s * stride_lsp + b * stride_lpb + h * stride_lph + i, mask=s_ok,
                    other=float("-inf"))
    mx = tl.max(lse_s, 0)
    sink = 0.0
    if HAS_SINK:
        sink = tl.load(SINK + h).to(tl.float32)
        mx = tl.maximum(mx, sink)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    w = tl.exp(lse_s - mx)
    total = tl.sum(w, 0)
    if HAS_SINK:
        total += tl.exp(sink - mx)
    mask = s_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    parts = tl.load(OP + offs_s[:, None] * stride_psp + b.to(tl.int64) * stride_pb + i * stride_ps + h * stride_ph
                    + offs_d[None, :], mask=mask, other=0.0)
    empty = total == 0.0
    out = tl.sum(parts * w[:, None], 0) / tl.where(empty, 1.0, total)
    tl.store(O + b.to(tl.int64) * stride_ob + i.to(tl.int64) * stride_os + h * stride_oh + offs_d,
             out.to(O.dtype.element_ty), mask=offs_d < HEAD_DIM)
    tl.store(LSE + b * stride_lb + h * stride_lh + i, tl.where(empty, float("inf"), mx + tl.log(total)))
