"""Attention, bf16: fa_kernels (backend="auto", and each of its backends) vs SDPA's flash and cuDNN
backends, all timed by benchmarks/timing.py in the same run.

batch * seqlen = 16k tokens, nheads * headdim = 2048; FLOPs = 4 * b * s^2 * h * d (halved if causal)
for the forward, 2.5x that for the backward alone (fwd+bwd = 3.5x fwd, REFERENCE.md section 7).
Prints one table per direction; writes results/attention.*.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import fa_kernels
from common import first_call_text, header, phase_tables, save
from fa_kernels import backend as fa_backend
from fa_kernels.auto import AttnShape
from fa_kernels.cuda import attention as cuda_attention
from timing import DO_BENCH_REP_MS, METHOD, Timing, measure_all

SEQLENS = [512, 1024, 2048, 4096, 8192, 16384]
PEERS = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION}
BWD_FLOPS = 2.5  # the backward alone, in forwards


def implementations(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool) -> dict[str, Callable[[], Any]]:
    """Everything timed in a case; on an H100/H200 also the compiled backend's other forwards:
    cuda_sm80 (FA_KERNELS_SM90=0) and cuda_overlapped (the sm90 forward's earlier schedule; `cuda` runs
    the default, ping-pong), and its sm90 backward: cuda_bwd90 (FA_KERNELS_SM90_BWD=1 while the backward
    runs; the forward is `cuda`'s)."""
    def ours(name: str) -> Callable[[], Any]:
        return lambda: fa_kernels.flash_attn_func(q, k, v, causal=causal, backend=name)

    def sdpa(backend: SDPBackend) -> Callable[[], Any]:
        def run() -> torch.Tensor:  # same (b, s, h, d) tensors, viewed as SDPA's (b, h, s, d)
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                     is_causal=causal)
            return out.transpose(1, 2)
        return run

    impls = {"auto": ours("auto"), "triton": ours("triton")}
    if cuda_attention.compiled():
        impls["cuda"] = ours("cuda")  # on an H100/H200: the sm_90a forward (flash_fwd_sm90.cu)
        if torch.cuda.get_device_capability(q.device) == (9, 0):
            impls["cuda_sm80"] = _with_sm90_mode("0", ours("cuda"))
            impls["cuda_overlapped"] = _with_sm90_mode("overlapped", ours("cuda"))
            impls["cuda_bwd90"] = _with_sm90_backward(q, k, v, causal)
    impls |= {name: sdpa(b) for name, b in PEERS.items()}
    return impls


def _with_sm90_mode(mode: str, run: Callable[[], Any]) -> Callable[[], Any]:
    """The compiled backend with FA_KERNELS_SM90=mode for the call ("0": the sm_80 forward on a Hopper
    GPU, "overlapped": the sm90 forward's schedule before ping-pong). The extension reads it on every call, so a
    CUDA graph captures whichever path was set at capture."""
    def call() -> Any:
        saved = os.environ.get("FA_KERNELS_SM90")
        os.environ["FA_KERNELS_SM90"] = mode
        try:
            return run()
        finally:
            _restore_env("FA_KERNELS_SM90", saved)
    return call


_SAVED_ENV: list[str | None] = []  # FA_KERNELS_SM90_BWD before a backward of _with_sm90_backward set it


class _BackwardEnv(torch.autograd.Function):
    """The identity forward; backward sets FA_KERNELS_SM90_BWD=1 (`enter`, applied to the outputs: its
    backward runs before the attention's) or restores the value before (applied to the inputs: runs after).
    The backward runs outside the call the bench times a forward by, so a wrapper like _with_sm90_mode
    would leave it unset there."""

    @staticmethod
    def forward(ctx: Any, enter: bool, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.enter = enter
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        if ctx.enter:
            _SAVED_ENV.append(os.environ.get("FA_KERNELS_SM90_BWD"))
            os.environ["FA_KERNELS_SM90_BWD"] = "1"
        else:
            _restore_env("FA_KERNELS_SM90_BWD", _SAVED_ENV.pop())
        return (None, *grads)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _with_sm90_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> Callable[[], Any]:
    """The compiled backend whose backward runs the sm90 kernels (FA_KERNELS_SM90_BWD=1, read per call)."""
    def run() -> torch.Tensor:
        qi, ki, vi = _BackwardEnv.apply(False, q, k, v)
        out = fa_kernels.flash_attn_func(qi, ki, vi, causal=causal, backend="cuda")
        return _BackwardEnv.apply(True, out)[0]
    return run


def run_case(head_dim: int, causal: bool, seqlen: int, graphs: bool, notes: set[str],
             rep: int = DO_BENCH_REP_MS, only: list[str] | None = None,
             phases: tuple[str, ...] = ("fwd", "bwd")) -> dict[str, dict[str, Any]]:
    """One shape: every implementation (or auto plus those in `only`) in each phase."""
    batch, nheads = 16384 // seqlen, 2048 // head_dim
    q, k, v = (torch.randn(batch, seqlen, nheads, head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    fwd_flops = 4 * batch * seqlen * seqlen * nheads * head_dim / (2 if causal else 1)
    impls = implementations(q, k, v, causal)
    if only is not None:
        impls = {name: run for name, run in impls.items() if name == "auto" or name in only}
    rows = {}
    for phase, direction, flops in (("fwd", "forward", fwd_flops), ("bwd", "backward", BWD_FLOPS * fwd_flops)):
        if phase not in phases:
            continue
        times = measure_all(impls, (q, k, v), phase, graphs=graphs, rep=rep)
        chose, why = fa_backend.explain("attention", direction, AttnShape(seqlen, head_dim, causal), q.device)
        notes.add(f"auto, {direction}, hd{head_dim} {'causal' if causal else 'full'} seqlen {seqlen}: "
                  f"{chose} ({why})")
        notes.update(f"{name} {phase} hd{head_dim} seqlen {seqlen}: {t.note}"
                     for name, t in times.items() if t.note)
        rows[phase] = _row(head_dim, causal, seqlen, chose, times, flops)
    return rows


def _tflops(flops: float, ms: float | None) -> float | None:
    return flops / ms / 1e9 if ms else None


def _row(head_dim: int, causal: bool, seqlen: int, chose: str, times: dict[str, Timing],
         flops: float) -> dict[str, Any]:
    auto = times["auto"]
    alt, alt_field = ("kernel", "kernel_ms") if auto.kernel_ms is not None else ("graph", "graph_ms")
    row: dict[str, Any] = {"hd": head_dim, "causal": causal, "seqlen": seqlen, "auto chose": chose,
                           "auto TFLOP/s": _tflops(flops, auto.ms), "auto ms": auto.ms,
                           f"auto {alt} ms": getattr(auto, alt_field)}
    for peer in PEERS:
        t = times.get(peer)
        if t is not None:
            row[f"x {peer}"] = t.ms / auto.ms if t.ms and auto.ms else None
    for name, t in times.items():
        if name != "auto":
            row[f"{name} TFLOP/s"], row[f"{name} {alt} ms"] = _tflops(flops, t.ms), getattr(t, alt_field)
    cudnn = times.get("sdpa_cudnn")
    for name in ("cuda", "cuda_overlapped", "cuda_bwd90"):  # issue #16's target: the compiled backend vs cuDNN
        ours = times.get(name)
        if ours is not None and cudnn is not None:
            row[f"{name} x sdpa_cudnn"] = cudnn.ms / ours.ms if cudnn.ms and ours.ms else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seqlens", type=int, nargs="*", default=SEQLENS)
    parser.add_argument("--head-dims", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--no-graphs", action="store_true", help="leave out the CUDA-graph replay columns")
    parser.add_argument("--no-first-call", action="store_true")
    parser.add_argument("--rep", type=int, default=DO_BENCH_REP_MS, help="do_bench rep (ms) per measurement")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="time auto and only these (e.g. cuda cuda_overlapped cuda_bwd90 triton sdpa_cudnn)")
    parser.add_argument("--phases", nargs="+", choices=("fwd", "bwd"), default=["fwd", "bwd"])
    args = parser.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {phase: [] for phase in args.phases}
    notes: set[str] = set()
    for head_dim, causal, seqlen in itertools.product(args.head_dims, (False, True), args.seqlens):
        case = run_case(head_dim, causal, seqlen, not args.no_graphs, notes, args.rep, args.only,
                        tuple(args.phases))
        for phase in rows:
            rows[phase].append(case[phase])
            print(phase, case[phase], flush=True)
    meta = header()
    text = (f"# Attention bf16 ({meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, {meta['date']})\n\n"
            f"{METHOD}\n\n`auto` = backend=\"auto\" (`auto chose`: its backend for that direction; for attention "
            "the backward's choice runs the whole training call); `triton`, `cuda` = our backends by name; "
            "on an H100/H200 `cuda` runs the sm_90a forward's ping-pong schedule, `cuda_sm80` and `cuda_overlapped` "
            "= `cuda` with FA_KERNELS_SM90=0 / overlapped, `cuda_bwd90` = `cuda` with FA_KERNELS_SM90_BWD=1 (the sm90 "
            "backward). "
            "`x sdpa_*` = SDPA backend's time / auto's (>= 1: we are ahead). TFLOP/s: fwd 4*b*s^2*h*d "
            "(halved when causal), bwd 2.5x that.\n")
    text += phase_tables(rows, notes)
    if not args.no_first_call:
        snippet = ("q = torch.randn(2, 1024, 16, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
                   "def run():\n    o = fa_kernels.flash_attn_func(q, q, q, causal=True, backend='triton')\n"
                   "    o.sum().backward()")
        text += first_call_text(snippet, "fwd+bwd, hd128 causal", meta)
    print(text)
    save("attention", meta, [row for phase in rows for row in rows[phase]], text)


if __name__ == "__main__":
    main()
