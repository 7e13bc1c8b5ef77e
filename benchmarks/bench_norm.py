"""DropoutAddRMSNorm (prenorm, residual given), bf16: fa_kernels vs upstream flash_attn's Triton
rms_norm_fn, torch.compile of the reference, and eager PyTorch, all measured in the same run.

Bytes as REFERENCE.md section 7: forward 4 x M x N x 2 (x, residual in; out, residual_out written),
backward 5 x M x N x 2. Upstream's module is imported from .bench_deps/ when present (the flash-attn
sdist's flash_attn/ops/triton/layer_norm.py and flash_attn/utils, unmodified, not committed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

import fa_kernels
from common import (
    bench_ms,
    copy_bandwidth_tbs,
    first_call_seconds,
    header,
    prime_memory,
    save,
    table,
)

SHAPES = [(16384, 4096), (32768, 8192), (65536, 2048)]
TRIALS = 3
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


# the benchmark replays one graph's backward (retain_graph), which donated buffers forbid
import torch._functorch.config  # noqa: E402

torch._functorch.config.donated_buffer = False
compiled = torch.compile(eager)


def measure(fn, x, res, w, bwd: bool, quick: bool = False) -> float:  # type: ignore[no-untyped-def]
    bench = (lambda f: bench_ms(f, warmup=5, rep=5)) if quick else bench_ms
    if not bwd:
        with torch.no_grad():
            return bench(lambda: fn(x, res, w))
    y, s = fn(x, res, w)
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    return bench(lambda: torch.autograd.grad((y, s), (x, res, w), (dy, ds), retain_graph=True))


def host_ms(fn, x, res, w) -> float:  # type: ignore[no-untyped-def]
    """Host time to issue one backward (Python, autograd, launches), GPU work left in flight. When it
    is close to the measured time, the op is bound by launch overhead, not by the kernel."""
    y, s = fn(x, res, w)
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    torch.autograd.grad((y, s), (x, res, w), (dy, ds), retain_graph=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        torch.autograd.grad((y, s), (x, res, w), (dy, ds), retain_graph=True)
    elapsed = (time.perf_counter() - start) / 20 * 1e3
    torch.cuda.synchronize()
    return elapsed


def main() -> None:
    prime_memory()
    bw = copy_bandwidth_tbs()
    up = upstream()
    rows = []
    # one untimed pass over every case first: Triton JIT, torch.compile and first touches of new
    # memory all land there instead of on whichever case is measured first
    for timed in (False, True):
        for (m, n), p in [(s, p) for s in SHAPES for p in (0.0, 0.1)]:
            row = run_case(m, n, p, up, bw, timed)
            if timed:
                rows.append(row)
                print(row, flush=True)
    _report(rows, bw, up)


def run_case(m: int, n: int, p: float, up: Any, bw: float, timed: bool) -> dict[str, Any]:
    x, res = (torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    w = torch.randn(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    impls = {
        "ours": lambda x, r, w, p=p: fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p,
                                                           prenorm=True, eps=1e-6, backend="triton"),
        "compile": lambda x, r, w, p=p: compiled(x, r, w, p),
        "eager": lambda x, r, w, p=p: eager(x, r, w, p),
    }
    if "cuda" in fa_kernels.available():
        impls["cuda"] = lambda x, r, w, p=p: fa_kernels.rms_norm_fn(
            x, w, None, residual=r, dropout_p=p, prenorm=True, eps=1e-6, backend="cuda")
    if up is not None:
        impls["flash_attn"] = lambda x, r, w, p=p: up(x, w, None, residual=r, dropout_p=p,
                                                       prenorm=True, eps=1e-6)
    row: dict[str, Any] = {"M x N": f"{m}x{n}", "p": p}
    if not timed:
        for fn in impls.values():
            for bwd in (False, True):
                measure(fn, x, res, w, bwd, quick=True)
        return row
    for phase, nbytes in (("fwd", 4 * m * n * 2), ("bwd", 5 * m * n * 2)):
        # best of TRIALS interleaved measurements: on a freshly started machine one measurement in a
        # while comes out slow for a stretch (any implementation, mostly the first shape)
        times = {name: float("inf") for name in impls}
        for _ in range(TRIALS):
            for name, fn in impls.items():
                times[name] = min(times[name], measure(fn, x, res, w, phase == "bwd"))
        row[f"{phase} ms"] = times["ours"]
        row[f"{phase} TB/s"] = nbytes / times["ours"] / 1e9
        if phase == "fwd":
            row["fwd %copy"] = 100 * row["fwd TB/s"] / bw
        if "cuda" in times:  # the compiled backend beside the Triton one
            row[f"{phase} cuda ms"] = times["cuda"]
            row[f"{phase} cuda %copy"] = 100 * nbytes / times["cuda"] / 1e9 / bw
        for name in ("flash_attn", "compile", "eager"):
            if name in times:
                row[f"{phase} {name} ms"] = times[name]
                row[f"{phase} x{name}"] = times[name] / times["ours"]
    for name in ("ours", "compile"):
        row[f"bwd host {name} ms"] = host_ms(impls[name], x, res, w)
    return row


def _report(rows: list[dict[str, Any]], bw: float, up: Any) -> None:
    meta = {**header(), "copy_tbs": bw, "upstream": up is not None}
    cols = ["M x N", "p", "fwd ms", "fwd TB/s", "fwd %copy", "fwd xflash_attn", "fwd xcompile",
            "fwd xeager", "bwd ms", "bwd TB/s", "bwd xflash_attn", "bwd xcompile", "bwd xeager",
            "fwd cuda ms", "fwd cuda %copy", "bwd cuda ms", "bwd cuda %copy",
            "fwd flash_attn ms", "fwd compile ms", "bwd flash_attn ms", "bwd compile ms",
            "bwd host ours ms", "bwd host compile ms"]
    text = (f"# DropoutAddRMSNorm bf16, prenorm with residual ({meta['gpu']}, torch {meta['torch']}, "
            f"triton {meta['triton']}, {meta['date']})\n\nCopy bandwidth measured in this run: {bw:.2f} TB/s. Each time: the best of {TRIALS} interleaved do_bench medians. "
            "Ours = the Triton backend; `cuda` columns = the compiled CUDA C++ backend when this build has it. "
            "`xNAME` = NAME's time / ours (higher is better for us). `bwd host` columns: host time to issue "
            "one backward (Python, autograd, launches); near the measured time means launch-bound.\n\n" + table(rows, cols))
    snippet = ("x = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
               "r = torch.randn_like(x); w = torch.ones(4096, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
               "def run():\n    y, s = fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=0.1, prenorm=True,"
               " backend='triton')\n"
               "    (y.float().sum() + s.float().sum()).backward()")
    cold, warm = first_call_seconds(snippet)
    meta["first_call_s"] = {"cold_cache": cold, "warm_cache": warm}
    text += (f"\n\nFirst call (fwd+bwd with dropout, includes Triton JIT): {cold:.2f} s with an empty Triton "
             f"cache, {warm:.2f} s in a new process with the cache warm.")
    print(text)
    save("norm", meta, rows, text)


if __name__ == "__main__":
    main()
