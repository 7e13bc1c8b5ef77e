"""Launchers and autograd for the fused norm kernels."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from fa_kernels import _alloc
from fa_kernels.intmath import cdiv, next_pow2
from fa_kernels.triton import norm_kernels as K

MAX_HIDDEN = 32768  # one row lives in registers; beyond this it would spill

Opt = torch.Tensor | None


@dataclass(frozen=True)
class NormCall:
    eps: float
    dropout_p: float
    is_rms: bool
    zero_centered_weight: bool
    residual_dtype: torch.dtype
    out_dtype: torch.dtype
    store_keep: bool
    prenorm: bool


def _threshold(p: float) -> int:
    return min(65536, math.ceil(p * 65536))


def _warps(block_n: int) -> int:
    """Forward warps for a tile of block_n elements: at most 8 (an H200 sweep at hidden 2k-8k,
    benchmarks/sweep_norm_fwd.py: 16 warps lost 6% at 32768x8192 and 2.7% at 65536x2048 with dropout,
    and were no faster at p=0; hidden sizes above 8k were not swept)."""
    return max(1, min(8, block_n // 256))


def fwd_rows(n: int, device: torch.device) -> int:
    """Rows per forward program: small rows are batched so each program has ~4k elements of work."""
    if device.type != "cuda":
        return 2
    return max(1, 4096 // max(16, int(next_pow2(n))))


def block_n_for(n: int) -> int:
    if n > MAX_HIDDEN:
        raise NotImplementedError(
            f"hidden size {n} > {MAX_HIDDEN}: the fused norm keeps a row in registers; split the row")
    return max(16, int(next_pow2(n)))


def forward(x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt, rowscale: Opt, call: NormCall, seed: int,
            out: Opt = None, residual_out: Opt = None) -> tuple[torch.Tensor, Opt, Opt, torch.Tensor, Opt]:
    """-> (y, s, keep, rstd, mean): s the pre-norm sum (None where it is x), keep the int8 dropout mask
    (None unless asked for), mean None for RMSNorm."""
    m, n = x.shape
    block = block_n_for(n)
    y = out if out is not None else _alloc.empty((m, n), dtype=call.out_dtype, device=x.device)
    # s (the pre-norm sum) must be kept when it differs from x or the caller wants it
    keep_s = (residual is not None or call.dropout_p > 0 or rowscale is not None or call.prenorm
              or call.residual_dtype != x.dtype or residual_out is not None)
    s = None
    if keep_s:
        s = residual_out if residual_out is not None else _alloc.empty(
            (m, n), dtype=call.residual_dtype, device=x.device)
    keep = _alloc.empty((m, n), dtype=torch.int8, device=x.device) if call.store_keep else None
    rstd = _alloc.empty((m,), dtype=torch.float32, device=x.device)
    mean = None if call.is_rms else _alloc.empty((m,), dtype=torch.float32, device=x.device)
    rows = fwd_rows(n, x.device)
    K._norm_fwd_kernel[(cdiv(m, rows),)](
        x, residual, weight, bias, rowscale, y, s, keep, rstd, mean,
        x.stride(0), residual.stride(0) if residual is not None else 0, y.stride(0),
        s.stride(0) if s is not None else 0,
        m, n, call.eps, 1.0 / (1.0 - call.dropout_p) if call.dropout_p > 0 else 1.0,
        _threshold(call.dropout_p), seed,
        BLOCK_N=block, ROWS=rows, IS_RMS=call.is_rms, HAS_RES=residual is not None,
        HAS_W=weight is not None,
        HAS_B=bias is not None, HAS_ROWSCALE=rowscale is not None, HAS_DROPOUT=call.dropout_p > 0,
        STORE_RES_OUT=s is not None, STORE_KEEP=keep is not None,
        ZERO_CENTERED=call.zero_centered_weight, num_warps=_warps(block * rows),
    )
    return y, s, keep, rstd, mean


@dataclass(frozen=True)
class BwdLaunch:
    programs_per_sm: int
    num_warps: int
    num_stages: int
    rows: int = 1


def _stages_that_fit(n: int, rows: int, wanted: int) -> int:
    """Software-pipelining keeps (stages - 1) copies of three row tiles in shared memory."""
    per_stage = 3 * rows * int(next_pow2(n)) * 4
    fit = 1 + (160 * 1024) // per_stage
    return max(1, min(wanted, fit))


def bwd_launch(n: int, device: torch.device) -> BwdLaunch:
    """Backward launch shape; the winners of benchmarks/sweep_norm.py on an H100
    (benchmarks/results/sweep_norm.log)."""
    if device.type != "cuda":
        return BwdLaunch(1, 4, 1, rows=2)
    if n <= 2048:
        return BwdLaunch(2, 8, _stages_that_fit(n, 1, 3), rows=1)
    if n <= 4096:  # H200, kernel time at 16384x4096: 0.150 ms (p=0), 0.198 (p=0.1); 2 rows: 0.173, 0.230
        return BwdLaunch(2, 8, _stages_that_fit(n, 1, 2), rows=1)
    if n <= 8192:  # confirmed on an H200: 0.552 ms at 32768x8192, p=0 (upstream flash_attn: 0.568)
        return BwdLaunch(2, 16, _stages_that_fit(n, 2, 1), rows=2)
    return BwdLaunch(2, 16, _stages_that_fit(n, 1, 2), rows=1)


@functools.lru_cache(maxsize=16)
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def _programs(m: int, device: torch.device, per_sm: int) -> int:
    if device.type != "cuda":
        return min(m, 4)
    return min(m, _sm_count(device.index if device.index is not None else torch.cuda.current_device()) * per_sm)


def backward(dy: torch.Tensor, dres_out: Opt, s: torch.Tensor, weight: Opt, bias: Opt, rowscale: Opt,
             rstd: torch.Tensor, mean: Opt, call: NormCall, seed: int, x_dtype: torch.dtype,
             need_dres: bool) -> tuple[torch.Tensor, Opt, Opt, Opt]:
    m, n = s.shape
    block = block_n_for(n)
    if dy.stride(-1) != 1:
        dy = dy.contiguous()
    if dres_out is not None and dres_out.stride(-1) != 1:
        dres_out = dres_out.contiguous()
    dx = _alloc.empty((m, n), dtype=x_dtype, device=s.device)
    # dresidual equals dx unless dropout or rowscale sit between them, or the dtypes differ
    separate = need_dres and (call.dropout_p > 0 or rowscale is not None or call.residual_dtype != x_dtype)
    dres = _alloc.empty((m, n), dtype=call.residual_dtype, device=s.device) if separate else None
    launch = bwd_launch(n, s.device)
    programs = _programs(m, s.device, launch.programs_per_sm)
    rows_per = cdiv(m, programs)
    programs = cdiv(m, rows_per)
    dw_part = _alloc.empty((programs, n), dtype=torch.float32, device=s.device) if weight is not None else None
    db_part = _alloc.empty((programs, n), dtype=torch.float32, device=s.device) if bias is not None else None
    K._norm_bwd_kernel[(programs,)](
        s, weight, rowscale, dy, dres_out, dx, dres, dw_part, db_part, rstd, mean,
        s.stride(0), dy.stride(0), dres_out.stride(0) if dres_out is not None else 0, dx.stride(0),
        dres.stride(0) if dres is not None else 0,
        m, n, 1.0 / (1.0 - call.dropout_p) if call.dropout_p > 0 else 1.0, _threshold(call.dropout_p),
        seed, rows_per,
        BLOCK_N=block, IS_RMS=call.is_rms, HAS_W=weight is not None, HAS_B=bias is not None,
        HAS_ROWSCALE=rowscale is not None, HAS_DROPOUT=call.dropout_p > 0,
        HAS_DRES_OUT=dres_out is not None, STORE_DRES=dres is not None,
        ZERO_CENTERED=call.zero_centered_weight, NUM_STAGES=launch.num_stages,
        ROWS=launch.rows, num_warps=launch.num_warps,
    )
    # summed in fp32, then cast: a bf16 sum over hundreds of partials would lose the low bits
    dw = dw_part.sum(0).to(weight.dtype) if dw_part is not None and weight is not None else None
    db = db_part.sum(0).to(bias.dtype) if db_part is not None and bias is not None else None
    if need_dres and dres is None:
        dres = dx
    return dx, dres, dw, db


class FusedNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: Opt, bias: Opt, residual: Opt,
                rowscale: Opt, call: NormCall, seed: int, out: Opt,
                residual_out: Opt) -> tuple[torch.Tensor, Opt, Opt]:
        ctx.x_shape = x.shape
        n = x.shape[-1]
        x = _alloc.as_rows(x, n)
        residual = _alloc.as_rows(residual, n) if residual is not None else None
        y, s, keep, rstd, mean = forward(x, weight, bias, residual, rowscale, call, seed, out, residual_out)
        ctx.save_for_backward(s if s is not None else x, weight, bias, rowscale, rstd, mean)
        ctx.call, ctx.seed, ctx.x_dtype = call, seed, x.dtype
        ctx.has_residual = residual is not None
        ctx.set_materialize_grads(False)  # an unused residual_out must not cost a zero-filled read
        if keep is not None:
            ctx.mark_non_differentiable(keep)
        return y, s, keep

    @staticmethod
    def backward(ctx: Any, dy: Opt, ds: Opt, _dkeep: Opt) -> tuple[Opt, ...]:
        s, weight, bias, rowscale, rstd, mean = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(s, dtype=ctx.call.out_dtype)
        dx, dres, dw, db = backward(dy, ds, s, weight, bias, rowscale, rstd, mean, ctx.call, ctx.seed,
                                    ctx.x_dtype, ctx.has_residual)
        dx, dres = _alloc.input_shaped(dx, dres, ctx.x_shape)
        return dx, dw, db, dres if ctx.has_residual else None, None, None, None, None, None
