"""Launchers and autograd for the Triton attention kernels."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch

from fa_kernels import _alloc
from fa_kernels.calls import AttnProblem
from fa_kernels.intmath import cdiv, next_pow2
from fa_kernels.triton import attention_kernels as K


@functools.cache
def block_d(head_dim: int) -> int:
    """The head-dim tile: the next power of two, at least 16 (tl.dot's smallest K)."""
    return max(16, int(next_pow2(head_dim)))


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _is_hopper(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


@dataclass(frozen=True)
class Config:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def fwd_config(p: AttnProblem, device: torch.device) -> Config:
    """Fixed per-shape configs (no autotuning: first calls stay fast). Hopper values are the winners
    of benchmarks/sweep_attention.py on an H100 (results in benchmarks/results/sweep_attention.log)."""
    if interpreting() or device.type != "cuda":
        return Config(32, 32, 4, 1)
    if not _is_hopper(device):
        return Config(64, 64, 4, 2)
    if block_d(p.head_dim) <= 64:
        return Config(64, 64, 4, 3) if p.causal else Config(128, 64, 8, 3)
    if block_d(p.head_dim) <= 128:
        return Config(64, 64, 4, 3)
    return Config(64, 64, 4, 2)


def bwd_config(p: AttnProblem, device: torch.device) -> tuple[Config, Config]:
    """(dK/dV kernel, dQ kernel), chosen like fwd_config."""
    if interpreting() or device.type != "cuda":
        return Config(32, 32, 4, 1), Config(32, 32, 4, 1)
    if not _is_hopper(device) or block_d(p.head_dim) > 128:
        return Config(32, 64, 4, 1), Config(64, 32, 4, 1)
    if block_d(p.head_dim) <= 64:
        return Config(32, 64, 4, 3), Config(64, 32, 4, 3)
    return Config(64, 128, 8, 3), Config(128, 64, 8, 3)


def _strides3(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, seq, head) strides of a (b, s, h, d) tensor, or (0, token, head) of a (total, h, d) one."""
    s = t.stride()  # one call: stride(i) three times costs more in a decoding loop
    if len(s) == 4:
        return s[0], s[1], s[2]
    return 0, s[0], s[1]


def _lse_strides(lse: torch.Tensor) -> tuple[int, int]:
    return (lse.stride(0), lse.stride(1)) if lse.dim() == 3 else (0, lse.stride(0))


def _flags(p: AttnProblem, alibi: torch.Tensor | None) -> dict[str, bool]:
    return {
        "IS_VARLEN": p.varlen, "CHECK_LEFT": p.check_left, "CHECK_RIGHT": p.check_right,
        "HAS_SOFTCAP": p.softcap > 0, "HAS_ALIBI": alibi is not None, "HAS_DROPOUT": p.dropout_p > 0,
    }


def _scalars(p: AttnProblem, seed: int) -> tuple[float, float, float, int, int, int]:
    return (p.softmax_scale, p.softcap if p.softcap > 0 else 1.0, p.dropout_p, seed,
            max(p.window[0], 0), p.win_right)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: AttnProblem, *,
            cu_q: torch.Tensor | None, cu_k: torch.Tensor | None, alibi: torch.Tensor | None,
            seed: int, sink: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    out = _alloc.empty_like(q)
    if p.varlen:
        lse = _alloc.empty((p.nheads, q.shape[0]), dtype=torch.float32, device=q.device)
    else:
        lse = _alloc.empty((p.batch, p.nheads, p.max_seqlen_q), dtype=torch.float32, device=q.device)
    cfg = fwd_config(p, q.device)
    grid = (cdiv(p.max_seqlen_q, cfg.block_m), p.batch * p.nheads)
    slb = alibi.stride(0) if alibi is not None and alibi.dim() == 2 else 0
    K._fwd_kernel[grid](
        q, k, v, out, lse, alibi, cu_q, cu_k, sink, *_scalars(p, seed),
        *_strides3(q), *_strides3(k), *_strides3(v), *_strides3(out), *_lse_strides(lse), slb,
        p.nheads, p.nheads // p.nheads_k, p.max_seqlen_q, p.max_seqlen_k,
        HEAD_DIM=p.head_dim, BLOCK_D=block_d(p.head_dim), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, HAS_SINK=sink is not None,
        **_flags(p, alibi),
    )
    return out, lse


def sink_grad(sink: torch.Tensor, lse: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """d loss / d s_aux[h] = -sum over rows of P_sink * delta, P_sink = exp(s_aux[h] - lse): the sink's
    probability times its dP (0: it has no value row) minus the row's delta."""
    per_head = (1, -1, 1) if lse.dim() == 3 else (-1, 1)
    p_sink = torch.exp(sink.float().view(per_head) - lse)
    rows = (0, 2) if lse.dim() == 3 else (1,)
    return (-(p_sink * delta).sum(rows)).to(sink.dtype)


def backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
             lse: torch.Tensor, p: AttnProblem, *, cu_q: torch.Tensor | None,
             cu_k: torch.Tensor | None, alibi: torch.Tensor | None, seed: int,
             sink: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if do.stride(-1) != 1:
        do = do.contiguous()
    dq, dk, dv = _alloc.empty_like(q), _alloc.empty_like(k), _alloc.empty_like(v)
    delta = _alloc.empty_like(lse)
    cfg_kv, cfg_q = bwd_config(p, q.device)
    pre_m = 64 if not interpreting() else 32
    K._bwd_preprocess[(cdiv(p.max_seqlen_q, pre_m), p.batch * p.nheads)](
        out, do, delta, cu_q, *_strides3(out), *_strides3(do), *_lse_strides(delta),
        p.nheads, p.max_seqlen_q, HEAD_DIM=p.head_dim, BLOCK_D=block_d(p.head_dim), BLOCK_M=pre_m,
        IS_VARLEN=p.varlen,
    )
    slb = alibi.stride(0) if alibi is not None and alibi.dim() == 2 else 0
    flags = _flags(p, alibi)
    common = (p.head_dim, block_d(p.head_dim))
    K._bwd_dkdv_kernel[(cdiv(p.max_seqlen_k, cfg_kv.block_n), p.batch * p.nheads_k)](
        q, k, v, do, lse, delta, dk, dv, alibi, cu_q, cu_k, *_scalars(p, seed),
        *_strides3(q), *_strides3(k), *_strides3(v), *_strides3(do), *_strides3(dk),
        *_strides3(dv), *_lse_strides(lse), slb,
        p.nheads, p.nheads_k, p.nheads // p.nheads_k, p.max_seqlen_q, p.max_seqlen_k,
        HEAD_DIM=common[0], BLOCK_D=common[1], BLOCK_M=cfg_kv.block_m, BLOCK_N=cfg_kv.block_n,
        num_warps=cfg_kv.num_warps, num_stages=cfg_kv.num_stages, **flags,
    )
    K._bwd_dq_kernel[(cdiv(p.max_seqlen_q, cfg_q.block_m), p.batch * p.nheads)](
        q, k, v, do, lse, delta, dq, alibi, cu_q, cu_k, *_scalars(p, seed),
        *_strides3(q), *_strides3(k), *_strides3(v), *_strides3(do), *_strides3(dq),
        *_lse_strides(lse), slb,
        p.nheads, p.nheads // p.nheads_k, p.max_seqlen_q, p.max_seqlen_k,
        HEAD_DIM=common[0], BLOCK_D=common[1], BLOCK_M=cfg_q.block_m, BLOCK_N=cfg_q.block_n,
        num_warps=cfg_q.num_warps, num_stages=cfg_q.num_stages, **flags,
    )
    return dq, dk, dv, sink_grad(sink, lse, delta) if sink is not None else None


def dropout_keep_mask(p: AttnProblem, seed: int, device: torch.device,
                      cu_q: torch.Tensor | None = None,
                      cu_k: torch.Tensor | None = None) -> torch.Tensor:
    """The (b, h, max_seqlen_q, max_seqlen_k) keep mask a call with ``seed`` drew (True = kept)."""
    keep = torch.zeros(p.batch, p.nheads, p.max_seqlen_q, p.max_seqlen_k, dtype=torch.int8,
                       device=device)
    block = 32 if interpreting() else 64
    K._dropout_keep_kernel[(cdiv(p.max_seqlen_q, block), p.batch * p.nheads)](
        keep, cu_q, cu_k, p.dropout_p, seed, keep.stride(0), keep.stride(1), keep.stride(2),
        p.nheads, p.max_seqlen_q, p.max_seqlen_k, BLOCK_M=block, BLOCK_N=block, IS_VARLEN=p.varlen,
    )
    return keep.bool()


class FlashAttnFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                cu_q: torch.Tensor | None, cu_k: torch.Tensor | None, alibi: torch.Tensor | None,
                problem: AttnProblem, seed: int,
                s_aux: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = forward(q, k, v, problem, cu_q=cu_q, cu_k=cu_k, alibi=alibi, seed=seed, sink=s_aux)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, alibi, s_aux)
        ctx.problem, ctx.seed = problem, seed
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor,
                 _dlse: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse, cu_q, cu_k, alibi, s_aux = ctx.saved_tensors
        dq, dk, dv, ds_aux = backward(dout, q, k, v, out, lse, ctx.problem, cu_q=cu_q, cu_k=cu_k,
                                      alibi=alibi, seed=ctx.seed, sink=s_aux)
        return dq, dk, dv, None, None, None, None, None, ds_aux
