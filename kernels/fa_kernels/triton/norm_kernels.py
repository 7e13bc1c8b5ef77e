"""Fused (dropout + residual add + RMSNorm/LayerNorm) forward and backward in Triton.

Forward, one row per program: s = dropout(x * rowscale) + residual; y = norm(s) * w + b; it writes y,
s (the new residual, when needed) and 1/std. Backward: programs stride over rows, keep their dW/dB
partial sums in registers, and write one partial row each (summed afterwards): no atomics.

Dropout draws one Philox call per 8 elements (tl.randint4x gives four 32-bit words, each split into two
16-bit draws), so the random numbers cost little next to the memory traffic. Keep probability is
1 - ceil(p * 65536) / 65536 (within 2**-16 of 1 - p). The backward regenerates the same mask.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _keep_rows(seed, rows, N, threshold, BLOCK_N: tl.constexpr):
    """Keep mask [R, BLOCK_N] for ``rows`` [R]: True where a 16-bit draw >= threshold. A row's draws
    depend only on (seed, row, column), so any number of rows per program gives the same mask."""
    groups = tl.arange(0, BLOCK_N // 8)
    counter = (rows[:, None] * tl.cdiv(N, 8) + groups[None, :]).to(tl.uint32)
    r0, r1, r2, r3 = tl.randint4x(seed, counter)
    words = tl.reshape(tl.join(tl.join(r0, r1), tl.join(r2, r3)), [rows.shape[0], BLOCK_N // 2])
    halves = tl.reshape(tl.join(words & 0xFFFF, words >> 16), [rows.shape[0], BLOCK_N])
    return halves >= threshold


@triton.jit
def _norm_fwd_kernel(
    X, RES, W, B, ROWSCALE, Y, RES_OUT, KEEP_OUT, RSTD, MEAN,
    stride_x, stride_res, stride_y, stride_res_out,
    M, N, eps, dropout_scale, threshold, seed,
    BLOCK_N: tl.constexpr, ROWS: tl.constexpr, IS_RMS: tl.constexpr, HAS_RES: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_ROWSCALE: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    STORE_RES_OUT: tl.constexpr, STORE_KEEP: tl.constexpr, ZERO_CENTERED: tl.constexpr,
):
    """ROWS rows per program as one [ROWS, BLOCK_N] tile (several rows amortise the per-row work)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < M
    ok = row_ok[:, None] & (cols[None, :] < N)
    rows64 = rows.to(tl.int64)[:, None]
    s = tl.load(X + rows64 * stride_x + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_ROWSCALE:
        s = s * tl.load(ROWSCALE + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    if HAS_DROPOUT:
        keep = _keep_rows(seed, rows, N, threshold, BLOCK_N)
        s = tl.where(keep, s * dropout_scale, 0.0)
        if STORE_KEEP:
            tl.store(KEEP_OUT + rows64 * N + cols[None, :], keep.to(tl.int8), mask=ok)
    if HAS_RES:
        s = s + tl.load(RES + rows64 * stride_res + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if STORE_RES_OUT:
        tl.store(RES_OUT + rows64 * stride_res_out + cols[None, :], s.to(RES_OUT.dtype.element_ty),
                 mask=ok)
    if IS_RMS:
        xc = s
    else:
        mean = tl.sum(s, 1) / N
        tl.store(MEAN + rows, mean, mask=row_ok)
        xc = tl.where(ok, s - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 1) / N + eps)
    tl.store(RSTD + rows, rstd, mask=row_ok)
    y = xc * rstd[:, None]
    if HAS_W:
        w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)
        if ZERO_CENTERED:
            w = w + 1.0
        y = y * w[None, :]
    if HAS_B:
        y = y + tl.load(B + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + rows64 * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=ok)


@triton.jit
def _norm_bwd_kernel(
    S, W, ROWSCALE, DY, DRES_OUT, DX, DRES, DW_PART, DB_PART, RSTD, MEAN,
    stride_s, stride_dy, stride_dres_out, stride_dx, stride_dres,
    M, N, dropout_scale, threshold, seed, rows_per_program,
    BLOCK_N: tl.constexpr, ROWS: tl.constexpr, IS_RMS: tl.constexpr, HAS_W: tl.constexpr,
    HAS_B: tl.constexpr, HAS_ROWSCALE: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    HAS_DRES_OUT: tl.constexpr, STORE_DRES: tl.constexpr, ZERO_CENTERED: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    """Each program owns ``rows_per_program`` consecutive rows and walks them ROWS at a time (a
    [ROWS, BLOCK_N] tile keeps several rows' loads in flight)."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols[None, :] < N
    if HAS_W:
        w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
        if ZERO_CENTERED:
            w = w + 1.0
    dw = tl.zeros([ROWS, BLOCK_N], tl.float32)
    db = tl.zeros([ROWS, BLOCK_N], tl.float32)
    first = pid * rows_per_program
    end = tl.minimum(first + rows_per_program, M)
    for start in tl.range(first, end, ROWS, num_stages=NUM_STAGES):
        rows = start + tl.arange(0, ROWS)
        row_ok = rows < end
        ok = row_ok[:, None] & col_ok
        rows64 = rows.to(tl.int64)[:, None]
        s = tl.load(S + rows64 * stride_s + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows64 * stride_dy + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)[:, None]
        if IS_RMS:
            xhat = s * rstd
        else:
            mean = tl.load(MEAN + rows, mask=row_ok, other=0.0)[:, None]
            xhat = tl.where(ok, (s - mean) * rstd, 0.0)
        if HAS_W:
            wdy = dy * w
            dw += dy * xhat
        else:
            wdy = dy
        if HAS_B:
            db += dy
        c1 = (tl.sum(xhat * wdy, 1) / N)[:, None]
        if IS_RMS:
            ds = (wdy - xhat * c1) * rstd
        else:
            c2 = (tl.sum(wdy, 1) / N)[:, None]
            ds = (wdy - (xhat * c1 + c2)) * rstd
        if HAS_DRES_OUT:
            ds += tl.load(DRES_OUT + rows64 * stride_dres_out + cols[None, :], mask=ok,
                          other=0.0).to(tl.float32)
        if STORE_DRES:
            tl.store(DRES + rows64 * stride_dres + cols[None, :], ds.to(DRES.dtype.element_ty), mask=ok)
        dx = ds
        if HAS_DROPOUT:
            keep = _keep_rows(seed, rows, N, threshold, BLOCK_N)
            dx = tl.where(keep, dx * dropout_scale, 0.0)
        if HAS_ROWSCALE:
            dx = dx * tl.load(ROWSCALE + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None]
        tl.store(DX + rows64 * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=ok)
    if HAS_W:
        tl.store(DW_PART + pid.to(tl.int64) * N + cols, tl.sum(dw, 0), mask=cols < N)
    if HAS_B:
        tl.store(DB_PART + pid.to(tl.int64) * N + cols, tl.sum(db, 0), mask=cols < N)
