"""DropoutAddRMSNorm (prenorm, residual given), bf16: fa_kernels (backend="auto", and each of its
backends) vs upstream flash_attn's Triton rms_norm_fn, torch.compile of the reference, and eager
PyTorch, all timed by benchmarks/timing.py in the same run.

Bytes as REFERENCE.md section 7: forward 4 x M x N x 2 (x, residual in; out, residual_out written),
backward 5 x M x N x 2. Upstream's module is imported from .bench_deps/ when present (the flash-attn
sdist's flash_attn/ops/triton/layer_norm.py and flash_attn/utils, unmodified, not committed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import fa_kernels
from common import copy_bandwidth_tbs, first_call_text, header, phase_tables, prime_memory, save
from fa_kernels import backend as fa_backend
from fa_kernels.auto import NormShape
from timing import DO_BENCH_REP_MS, METHOD, Timing, measure_all

SHAPES = [(16384, 4096), (32768, 8192), (65536, 2048)]
PEERS = ("flash_attn", "compile", "eager")
DEPS = Path(__file__).resolve().parent.parent / ".bench_deps"


def upstream() -> Any | None:
    if not DEPS.is_dir():
        return None
    sys.path.insert(0, str(DEPS))
    try:
        from flash_attn.ops.triton.layer_norm import rms_norm_fn
    except Exception as exc:
        print(f"upstream flash_attn rms_norm_fn unavailable: {exc}")
        return None
    return rms_norm_fn


def eager(x, residual, weight, p):  # type: ignore[no-untyped-def]
    s = torch.nn.functional.dropout(x, p) + residual if p else x + residual
    sf = s.float()
    y = sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.float()
    return y.to(x.dtype), s


# the harness replays one graph's backward (retain_graph), which donated buffers forbid
import torch._functorch.config  # noqa: E402

torch._functorch.config.donated_buffer = False
compiled = torch.compile(eager)


def implementations(x: torch.Tensor, r: torch.Tensor, w: torch.Tensor, p: float,
                    up: Any) -> dict[str, Callable[[], Any]]:
    def ours(name: str) -> Callable[[], Any]:
        return lambda: fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p, prenorm=True, eps=1e-6,
                                              backend=name)

    impls = {"auto": ours("auto"), "triton": ours("triton")}
    if "cuda" in fa_kernels.available():
        impls["cuda"] = ours("cuda")
    if up is not None:
        impls["flash_attn"] = lambda: up(x, w, None, residual=r, dropout_p=p, prenorm=True, eps=1e-6)
    impls["compile"] = lambda: compiled(x, r, w, p)
    impls["eager"] = lambda: eager(x, r, w, p)
    return impls


def run_case(m: int, n: int, p: float, up: Any, bw: float, graphs: bool, notes: set[str],
             rep: int = DO_BENCH_REP_MS) -> dict[str, dict[str, Any]]:
    """-> {"fwd": row, "bwd": row} for one shape and dropout rate."""
    x, r = (torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    w = torch.randn(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    impls = implementations(x, r, w, p, up)
    rows = {}
    for phase, direction, nbytes in (("fwd", "forward", 4 * m * n * 2), ("bwd", "backward", 5 * m * n * 2)):
        times = measure_all(impls, (x, r, w), phase, graphs=graphs, rep=rep)
        chose, why = fa_backend.explain("norm", direction, NormShape(m, n, p > 0), x.device)
        notes.add(f"auto, {direction}, {m}x{n} p={p}: {chose} ({why})")
        notes.update(f"{name} {phase}: {t.note}" for name, t in times.items() if t.note)
        rows[phase] = _row(m, n, p, chose, times, nbytes, bw)
    return rows


def _row(m: int, n: int, p: float, chose: str, times: dict[str, Timing], nbytes: int,
         bw: float) -> dict[str, Any]:
    """One table row; the second column of each implementation is its graph replay for the forward and
    its kernel time for the backward (timing.kernel_ms: a backward graph is not captured)."""
    auto = times["auto"]
    alt, alt_field = ("kernel", "kernel_ms") if auto.kernel_ms is not None else ("graph", "graph_ms")
    row: dict[str, Any] = {"M x N": f"{m}x{n}", "p": p, "auto chose": chose, "auto ms": auto.ms,
                           "auto %copy": 100 * nbytes / auto.ms / 1e9 / bw if auto.ms else None,
                           f"auto {alt} ms": getattr(auto, alt_field)}
    for field, label in (("ms", "best peer"), (alt_field, f"best peer {alt}")):
        peers = {n: getattr(times[n], field) for n in PEERS if n in times and getattr(times[n], field)}
        best = min(peers, key=lambda n: peers[n]) if peers else None
        mine = getattr(auto, field)
        row[label] = best
        row[f"x {label}"] = peers[best] / mine if best and mine else None
    for name, t in times.items():
        if name != "auto":
            row[f"{name} ms"], row[f"{name} {alt} ms"] = t.ms, getattr(t, alt_field)
    return row


def _report(rows: dict[str, list[dict[str, Any]]], bw: float, up: Any, notes: set[str],
            first_call: bool) -> None:
    meta = {**header(), "copy_tbs": bw, "upstream": up is not None}
    text = (f"# DropoutAddRMSNorm bf16, prenorm with residual ({meta['gpu']}, torch {meta['torch']}, "
            f"triton {meta['triton']}, {meta['date']})\n\n{METHOD}\n\nCopy bandwidth measured in this run: "
            f"{bw:.2f} TB/s. `auto` = backend=\"auto\" (`auto chose`: its backend for that direction); "
            "`triton`, `cuda` = our backends by name; peers: upstream flash_attn Triton, torch.compile of the "
            "reference, eager. `x best peer` = the best peer's time / auto's (>= 1: we are ahead). Bytes: "
            "fwd 4*M*N*2, bwd 5*M*N*2.\n")
    text += phase_tables(rows, notes)
    if first_call:
        snippet = ("x = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
                   "r = torch.randn_like(x); w = torch.ones(4096, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
                   "def run():\n    y, s = fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=0.1, prenorm=True,"
                   " backend='triton')\n"
                   "    (y.float().sum() + s.float().sum()).backward()")
        text += first_call_text(snippet, "fwd+bwd with dropout", meta)
    print(text)
    save("norm", meta, rows["fwd"] + rows["bwd"], text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-graphs", action="store_true", help="leave out the CUDA-graph replay columns")
    parser.add_argument("--no-first-call", action="store_true")
    parser.add_argument("--rep", type=int, default=DO_BENCH_REP_MS, help="do_bench rep (ms) per measurement")
    args = parser.parse_args()
    prime_memory()
    bw = copy_bandwidth_tbs()
    up = upstream()
    rows: dict[str, list[dict[str, Any]]] = {"fwd": [], "bwd": []}
    notes: set[str] = set()
    for (m, n), p in [(s, p) for s in SHAPES for p in (0.0, 0.1)]:
        case = run_case(m, n, p, up, bw, not args.no_graphs, notes, args.rep)
        for phase in rows:
            rows[phase].append(case[phase])
            print(phase, case[phase], flush=True)
    _report(rows, bw, up, notes, not args.no_first_call)


if __name__ == "__main__":
    main()
