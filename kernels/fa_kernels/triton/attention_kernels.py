"""Flash attention in Triton: forward, and a deterministic two-kernel backward (dK/dV, then dQ).

Layout: q (.., seqlen_q, nheads, head_dim), k/v (.., seqlen_k, nheads_k, head_dim), last dim contiguous.
Fixed-length batches use a batch stride; variable-length ones (cu_seqlens) a start offset per sequence.
Masks (causal, sliding window) are aligned bottom-right: query i sits at key i + seqlen_k - seqlen_q.
Logits are kept in log2 units (exp2 is one instruction); softmax_lse is stored in natural log units.
Dropout draws a Philox number per (batch*head, i, j); every kernel regenerates the same one.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)
LN2: tl.constexpr = tl.constexpr(0.6931471805599453)
# Scalars Triton would otherwise specialise on (== 1, divisible by 16), compiling again per value class:
# sizes, counts, the LSE strides and the mask/dropout parameters. None feeds a pointer's alignment (the
# head_dim-row strides do, and stay specialised), so this costs no speed and lets one compiled kernel
# (and one precompiled one, see fa_kernels.precompiled) serve every sequence length and head count.
_SCALARS = ("seed", "win_left", "win_right", "stride_lb", "stride_lh", "stride_slb", "nheads", "group",
            "seqlen_q", "seqlen_k")


@triton.jit
def _tanh(x):
    # tanh from exp2, exact at both tails (exp2 overflow gives +-1), portable to the CPU interpreter
    e = tl.math.exp2(x * (2.0 * 1.4426950408889634))
    return 1.0 - 2.0 / (e + 1.0)


@triton.jit
def _logits2(qk, i, j, sm_scale, softcap, slope, diag, win_left, win_right, seqlen_k,
             MASK: tl.constexpr, CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
             HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """Scaled (capped, biased, masked) logits in log2 units, and tanh(.) for the softcap gradient.

    ``i`` and ``j`` are query and key indices, broadcastable to qk's shape (either orientation).
    """
    if HAS_SOFTCAP:
        t = _tanh(qk * (sm_scale / softcap))
        s = t * (softcap * LOG2E)
    else:
        t = qk
        s = qk * (sm_scale * LOG2E)
    if HAS_ALIBI:
        s = s - (slope * LOG2E) * tl.abs(i + diag - j).to(tl.float32)
    if MASK:
        ok = j < seqlen_k
        if CHECK_RIGHT:
            ok = ok & (j <= i + diag + win_right)
        if CHECK_LEFT:
            ok = ok & (j >= i + diag - win_left)
        s = tl.where(ok, s, float("-inf"))
    return s, t


@triton.jit
def _keep(seed, i, j, seqlen_k, dropout_p):
    return tl.rand(seed, i * seqlen_k + j) >= dropout_p


@triton.jit
def _seq_bounds(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN: tl.constexpr):
    if IS_VARLEN:
        q0 = tl.load(CU_Q + b)
        sq = tl.load(CU_Q + b + 1) - q0
        k0 = tl.load(CU_K + b)
        sk = tl.load(CU_K + b + 1) - k0
    else:
        q0 = 0
        sq = seqlen_q
        k0 = 0
        sk = seqlen_k
    return q0, sq, k0, sk


@triton.jit
def _key_range(start_m, diag, sk, win_left, win_right, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr):
    """Keys a query block [start_m, start_m + BLOCK_M) can see: [lo, hi); of those, [lo, full_hi) are
    whole blocks every row sees (no mask needed). With a left window everything is masked."""
    hi = sk
    if CHECK_RIGHT:
        hi = tl.minimum(sk, start_m + BLOCK_M + diag + win_right)
    if CHECK_LEFT:
        lo = tl.maximum(0, start_m + diag - win_left) // BLOCK_N * BLOCK_N
        full_hi = lo
    else:
        lo = 0
        full_hi = sk
        if CHECK_RIGHT:
            full_hi = tl.minimum(sk, start_m + diag + win_right + 1)
        full_hi = tl.maximum(full_hi, 0) // BLOCK_N * BLOCK_N
    return lo, full_hi, hi


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
               lo, hi, sm_scale, softcap, slope, diag, win_left, win_right, sk, seed, dropout_p,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
               MASK: tl.constexpr, CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
               HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    d_ok = offs_d[None, :] < HEAD_DIM
    for start_n in tl.range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASK:
            kv_ok = (cols[:, None] < sk) & d_ok
        else:
            kv_ok = d_ok
        k = tl.load(k_base + cols[:, None] * stride_ks + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k))
        s, _ = _logits2(qk, offs_m[:, None], cols[None, :], sm_scale, softcap, slope, diag,
                        win_left, win_right, sk, MASK, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP, HAS_ALIBI)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        if HAS_DROPOUT:
            p = tl.where(_keep(seed, offs_m[:, None], cols[None, :], sk, dropout_p), p, 0.0)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :], mask=kv_ok, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _with_sink(acc, l_i, m_i, sink2):
    """The attention sink (s_aux): one more logit (log2 units) in the softmax denominator, with no value
    row: the running max, sum and accumulator rescaled to take it in -> (acc, l_i, m_i)."""
    m_fin = tl.maximum(m_i, sink2)
    alpha = tl.math.exp2(m_i - m_fin)
    return acc * alpha[:, None], l_i * alpha + tl.math.exp2(sink2 - m_fin), m_fin


@triton.jit(do_not_specialize=_SCALARS)
def _fwd_kernel(
    Q, K, V, O, LSE, SLOPES, CU_Q, CU_K, SINK,
    sm_scale, softcap, dropout_p, seed, win_left, win_right,
    stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh, stride_ob, stride_os, stride_oh,
    stride_lb, stride_lh, stride_slb,
    nheads, group, seqlen_q, seqlen_k,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    HAS_SINK: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    q0, sq, k0, sk = _seq_bounds(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_m = pid_m * BLOCK_M
    if start_m >= sq:
        return
    diag = sk - sq
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_ok = (offs_m[:, None] < sq) & (offs_d[None, :] < HEAD_DIM)
    q_base = Q + b.to(tl.int64) * stride_qb + q0.to(tl.int64) * stride_qs + h * stride_qh
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :], mask=q_ok, other=0.0)
    kh = h // group
    k_base = K + b.to(tl.int64) * stride_kb + k0.to(tl.int64) * stride_ks + kh * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + k0.to(tl.int64) * stride_vs + kh * stride_vh
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(SLOPES + b * stride_slb + h).to(tl.float32)
    seed_bh = seed + pid_bh

    lo, full_hi, hi = _key_range(start_m, diag, sk, win_left, win_right, BLOCK_M, BLOCK_N,
                                 CHECK_LEFT, CHECK_RIGHT)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    acc, m_i, l_i = _fwd_inner(
        acc, m_i, l_i, q, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d, lo, full_hi,
        sm_scale, softcap, slope, diag, win_left, win_right, sk, seed_bh, dropout_p,
        HEAD_DIM, BLOCK_D, BLOCK_N, False, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP, HAS_ALIBI,
        HAS_DROPOUT)
    acc, m_i, l_i = _fwd_inner(
        acc, m_i, l_i, q, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
        tl.maximum(full_hi, lo), hi,
        sm_scale, softcap, slope, diag, win_left, win_right, sk, seed_bh, dropout_p,
        HEAD_DIM, BLOCK_D, BLOCK_N, True, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP, HAS_ALIBI,
        HAS_DROPOUT)

    if HAS_SINK:  # never dropped
        acc, l_i, m_i = _with_sink(acc, l_i, m_i, tl.load(SINK + h).to(tl.float32) * LOG2E)
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    inv = 1.0 / l_safe
    if HAS_DROPOUT:
        inv = inv / (1.0 - dropout_p)
    out = acc * inv[:, None]
    lse = tl.where(empty, float("inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    o_base = O + b.to(tl.int64) * stride_ob + q0.to(tl.int64) * stride_os + h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_os + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=q_ok)
    lse_base = LSE + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q0
    tl.store(lse_base + offs_m, lse, mask=offs_m < sq)


@triton.jit(do_not_specialize=("stride_lb", "stride_lh", "nheads", "seqlen_q"))
def _bwd_preprocess(
    O, DO, DELTA, CU_Q,
    stride_ob, stride_os, stride_oh, stride_dob, stride_dos, stride_doh, stride_lb, stride_lh,
    nheads, seqlen_q,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    """delta_i = sum_d dO_i * O_i (the row term of the softmax gradient)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    q0, sq, _k0, _sk = _seq_bounds(CU_Q, CU_Q, b, seqlen_q, seqlen_q, IS_VARLEN)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (offs_m[:, None] < sq) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + b.to(tl.int64) * stride_ob + (q0 + offs_m[:, None]).to(tl.int64) * stride_os
                + h * stride_oh + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + (q0 + offs_m[:, None]).to(tl.int64) * stride_dos
                 + h * stride_doh + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    delta = tl.sum(o * do, 1)
    tl.store(DELTA + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q0 + offs_m, delta,
             mask=offs_m < sq)


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qs, stride_dos,
                    offs_n, offs_d, lo, hi, sm_scale, softcap, slope, diag, win_left, win_right,
                    sq, sk, seed, dropout_p,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr,
                    CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
                    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr):
    offs_mb = tl.arange(0, BLOCK_M)
    d_ok = offs_d[None, :] < HEAD_DIM
    for start_m in tl.range(lo, hi, BLOCK_M):
        rows = start_m + offs_mb
        if MASK:
            row_ok = rows < sq
            q_ok = row_ok[:, None] & d_ok
        else:
            row_ok = rows >= 0
            q_ok = d_ok
        q = tl.load(q_base + rows[:, None] * stride_qs + offs_d[None, :], mask=q_ok, other=0.0)
        lse2 = tl.load(lse_base + rows, mask=row_ok, other=float("inf")) * LOG2E
        qkT = tl.dot(k, tl.trans(q))
        sT, tT = _logits2(qkT, rows[None, :], offs_n[:, None], sm_scale, softcap, slope, diag,
                          win_left, win_right, sk, MASK, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP,
                          HAS_ALIBI)
        pT = tl.math.exp2(sT - lse2[None, :])
        do = tl.load(do_base + rows[:, None] * stride_dos + offs_d[None, :], mask=q_ok, other=0.0)
        delta = tl.load(delta_base + rows, mask=row_ok, other=0.0)
        dpT = tl.dot(v, tl.trans(do))
        if HAS_DROPOUT:
            keep = _keep(seed, rows[None, :], offs_n[:, None], sk, dropout_p)
            scale = 1.0 / (1.0 - dropout_p)
            dv += tl.dot(tl.where(keep, pT * scale, 0.0).to(do.dtype), do)
            dpT = tl.where(keep, dpT * scale, 0.0)
        else:
            dv += tl.dot(pT.to(do.dtype), do)
        dsT = pT * (dpT - delta[None, :])
        if HAS_SOFTCAP:
            dsT = dsT * (1.0 - tT * tT)
        dk += tl.dot(dsT.to(q.dtype), q)
    return dk, dv


@triton.jit(do_not_specialize=(*_SCALARS, "nheads_k"))
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, SLOPES, CU_Q, CU_K,
    sm_scale, softcap, dropout_p, seed, win_left, win_right,
    stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh, stride_dob, stride_dos, stride_doh,
    stride_dkb, stride_dks, stride_dkh, stride_dvb, stride_dvs, stride_dvh,
    stride_lb, stride_lh, stride_slb,
    nheads, nheads_k, group, seqlen_q, seqlen_k,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr,
):
    """One key block of one KV head; loops over the query heads of its group (GQA) and the query rows
    that can see it, so dK/dV are summed in registers: deterministic, no atomics."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads_k
    kh = pid_bh % nheads_k
    q0, sq, k0, sk = _seq_bounds(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_n = pid_n * BLOCK_N
    if start_n >= sk:
        return
    diag = sk - sq
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_ok = (offs_n[:, None] < sk) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(K + b.to(tl.int64) * stride_kb + (k0 + offs_n[:, None]).to(tl.int64) * stride_ks
                + kh * stride_kh + offs_d[None, :], mask=kv_ok, other=0.0)
    v = tl.load(V + b.to(tl.int64) * stride_vb + (k0 + offs_n[:, None]).to(tl.int64) * stride_vs
                + kh * stride_vh + offs_d[None, :], mask=kv_ok, other=0.0)

    # query rows that see this key block at all, and those that see all of it (no mask needed)
    lo = 0
    if CHECK_RIGHT:
        lo = tl.maximum(0, start_n - diag - win_right) // BLOCK_M * BLOCK_M
    hi = sq
    if CHECK_LEFT:
        hi = tl.minimum(sq, start_n + BLOCK_N - diag + win_left)
        full_lo = hi
    else:
        full_lo = lo
        if CHECK_RIGHT:
            full_lo = tl.maximum(lo, start_n + BLOCK_N - 1 - diag - win_right)
            full_lo = (full_lo + BLOCK_M - 1) // BLOCK_M * BLOCK_M
        if start_n + BLOCK_N > sk:
            full_lo = hi
        full_lo = tl.minimum(full_lo, hi)
    if CHECK_LEFT:
        full_hi = hi
    else:
        full_hi = tl.maximum(full_lo, sq // BLOCK_M * BLOCK_M)

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for g in range(0, group):
        h = kh * group + g
        q_base = Q + b.to(tl.int64) * stride_qb + q0.to(tl.int64) * stride_qs + h * stride_qh
        do_base = DO + b.to(tl.int64) * stride_dob + q0.to(tl.int64) * stride_dos + h * stride_doh
        row_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q0
        slope = 0.0
        if HAS_ALIBI:
            slope = tl.load(SLOPES + b * stride_slb + h).to(tl.float32)
        seed_bh = seed + b * nheads + h
        dk, dv = _bwd_dkdv_inner(
            dk, dv, k, v, q_base, do_base, LSE + row_off, DELTA + row_off, stride_qs, stride_dos,
            offs_n, offs_d, lo, full_lo, sm_scale, softcap, slope, diag, win_left, win_right, sq, sk,
            seed_bh, dropout_p, HEAD_DIM, BLOCK_M, True, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP,
            HAS_ALIBI, HAS_DROPOUT)
        dk, dv = _bwd_dkdv_inner(
            dk, dv, k, v, q_base, do_base, LSE + row_off, DELTA + row_off, stride_qs, stride_dos,
            offs_n, offs_d, full_lo, full_hi, sm_scale, softcap, slope, diag, win_left, win_right,
            sq, sk, seed_bh, dropout_p, HEAD_DIM, BLOCK_M, False, CHECK_LEFT, CHECK_RIGHT,
            HAS_SOFTCAP, HAS_ALIBI, HAS_DROPOUT)
        dk, dv = _bwd_dkdv_inner(
            dk, dv, k, v, q_base, do_base, LSE + row_off, DELTA + row_off, stride_qs, stride_dos,
            offs_n, offs_d, full_hi, hi, sm_scale, softcap, slope, diag, win_left, win_right, sq, sk,
            seed_bh, dropout_p, HEAD_DIM, BLOCK_M, True, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP,
            HAS_ALIBI, HAS_DROPOUT)
    dk = dk * sm_scale
    tl.store(DK + b.to(tl.int64) * stride_dkb + (k0 + offs_n[:, None]).to(tl.int64) * stride_dks
             + kh * stride_dkh + offs_d[None, :], dk.to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + b.to(tl.int64) * stride_dvb + (k0 + offs_n[:, None]).to(tl.int64) * stride_dvs
             + kh * stride_dvh + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=kv_ok)


@triton.jit
def _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
                  lo, hi, sm_scale, softcap, slope, diag, win_left, win_right, sk, seed, dropout_p,
                  HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr,
                  CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
                  HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    d_ok = offs_d[None, :] < HEAD_DIM
    for start_n in tl.range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASK:
            kv_ok = (cols[:, None] < sk) & d_ok
        else:
            kv_ok = d_ok
        k = tl.load(k_base + cols[:, None] * stride_ks + offs_d[None, :], mask=kv_ok, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k))
        s, t = _logits2(qk, offs_m[:, None], cols[None, :], sm_scale, softcap, slope, diag,
                        win_left, win_right, sk, MASK, CHECK_LEFT, CHECK_RIGHT, HAS_SOFTCAP, HAS_ALIBI)
        p = tl.math.exp2(s - lse2[:, None])
        dp = tl.dot(do, tl.trans(v))
        if HAS_DROPOUT:
            keep = _keep(seed, offs_m[:, None], cols[None, :], sk, dropout_p)
            dp = tl.where(keep, dp * (1.0 / (1.0 - dropout_p)), 0.0)
        ds = p * (dp - delta[:, None])
        if HAS_SOFTCAP:
            ds = ds * (1.0 - t * t)
        dq += tl.dot(ds.to(k.dtype), k)
    return dq


@triton.jit(do_not_specialize=_SCALARS)
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, SLOPES, CU_Q, CU_K,
    sm_scale, softcap, dropout_p, seed, win_left, win_right,
    stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh, stride_dob, stride_dos, stride_doh,
    stride_dqb, stride_dqs, stride_dqh, stride_lb, stride_lh, stride_slb,
    nheads, group, seqlen_q, seqlen_k,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, CHECK_LEFT: tl.constexpr, CHECK_RIGHT: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_DROPOUT: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    q0, sq, k0, sk = _seq_bounds(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_m = pid_m * BLOCK_M
    if start_m >= sq:
        return
    diag = sk - sq
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_ok = (offs_m[:, None] < sq) & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(Q + b.to(tl.int64) * stride_qb + (q0 + offs_m[:, None]).to(tl.int64) * stride_qs
                + h * stride_qh + offs_d[None, :], mask=q_ok, other=0.0)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + (q0 + offs_m[:, None]).to(tl.int64) * stride_dos
                 + h * stride_doh + offs_d[None, :], mask=q_ok, other=0.0)
    row_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q0
    lse2 = tl.load(LSE + row_off + offs_m, mask=offs_m < sq, other=float("inf")) * LOG2E
    delta = tl.load(DELTA + row_off + offs_m, mask=offs_m < sq, other=0.0)
    kh = h // group
    k_base = K + b.to(tl.int64) * stride_kb + k0.to(tl.int64) * stride_ks + kh * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + k0.to(tl.int64) * stride_vs + kh * stride_vh
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(SLOPES + b * stride_slb + h).to(tl.float32)

    lo, full_hi, hi = _key_range(start_m, diag, sk, win_left, win_right, BLOCK_M, BLOCK_N,
                                 CHECK_LEFT, CHECK_RIGHT)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
                       lo, full_hi, sm_scale, softcap, slope, diag, win_left, win_right, sk,
                       seed + pid_bh, dropout_p, HEAD_DIM, BLOCK_N, False, CHECK_LEFT, CHECK_RIGHT,
                       HAS_SOFTCAP, HAS_ALIBI, HAS_DROPOUT)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
                       tl.maximum(full_hi, lo), hi, sm_scale, softcap, slope, diag, win_left,
                       win_right, sk, seed + pid_bh, dropout_p, HEAD_DIM, BLOCK_N, True, CHECK_LEFT,
                       CHECK_RIGHT, HAS_SOFTCAP, HAS_ALIBI, HAS_DROPOUT)
    dq = dq * sm_scale
    tl.store(DQ + b.to(tl.int64) * stride_dqb + (q0 + offs_m[:, None]).to(tl.int64) * stride_dqs
             + h * stride_dqh + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=q_ok)


@triton.jit
def _dropout_keep_kernel(KEEP, CU_Q, CU_K, dropout_p, seed, stride_kb, stride_kh, stride_km,
                         nheads, seqlen_q, seqlen_k, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         IS_VARLEN: tl.constexpr):
    """The keep mask (b, h, seqlen_q, seqlen_k) the attention kernels draw: for return_attn_probs."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    _q0, sq, _k0, sk = _seq_bounds(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    for start_n in range(0, sk, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        keep = _keep(seed + pid_bh, offs_m[:, None], cols[None, :], sk, dropout_p)
        ptrs = (KEEP + b.to(tl.int64) * stride_kb + h * stride_kh
                + offs_m[:, None].to(tl.int64) * stride_km + cols[None, :])
        tl.store(ptrs, keep.to(tl.int8), mask=(offs_m[:, None] < sq) & (cols[None, :] < sk))
