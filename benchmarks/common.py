"""Shared benchmark helpers: device ceilings, tables, results. Timing is timing.py's (one method for all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import triton

from timing import median_ms

# the older scripts' name for the one measurement (sweeps, bench_decode, bench_builds)
bench_ms = median_ms

RESULTS = Path(os.environ.get("OUT", Path(__file__).parent / "results"))


def gpu_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def prime_memory(gib: int = 24) -> None:
    """Touch device memory once: on a freshly started (virtualised) machine the first use of new GPU
    memory is slow, which would land on whichever case is measured first. The caching allocator
    keeps the touched blocks for the cases that follow."""
    block = torch.empty(gib << 30, dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    del block


def copy_bandwidth_tbs() -> float:
    """Device-to-device copy, bytes read + written, 4 GiB buffers rotated out of L2."""
    n = 1 << 30
    src = torch.randn(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    return 2 * n * 4 / ms / 1e9


def header() -> dict[str, str]:
    return {"gpu": gpu_name(), "torch": torch.__version__, "triton": triton.__version__,
            "date": time.strftime("%Y-%m-%d")}


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
             "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def save(name: str, meta: dict[str, Any], rows: list[dict[str, Any]], text: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / f"{name}.md").write_text(text + "\n")


def first_call_seconds(snippet: str) -> tuple[float, float]:
    """(cold, warm): the first call's latency in a fresh process with an empty Triton cache, then in
    a second fresh process that finds the cache the first one filled."""
    import tempfile

    cache = tempfile.mkdtemp(prefix="triton-cache-")
    code = ("import time, torch, fa_kernels\n" + snippet +
            "\ntorch.cuda.synchronize(); t = time.perf_counter(); run(); torch.cuda.synchronize()\n"
            "print('FIRST', time.perf_counter() - t)")
    times = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "TRITON_CACHE_DIR": cache}, timeout=600)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("FIRST")]
        if not line:
            raise RuntimeError(out.stderr[-2000:])
        times.append(float(line[0].split()[1]))
    return times[0], times[1]


def phase_tables(rows: dict[str, list[dict[str, Any]]], notes: set[str]) -> str:
    """The fwd and bwd tables of a benchmark, then its notes, as markdown."""
    text = ""
    for phase in (p for p in ("fwd", "bwd") if rows.get(p)):
        cols = list(dict.fromkeys(k for r in rows[phase] for k in r))
        text += f"\n## {phase}\n\n" + table(rows[phase], cols) + "\n"
    return text + "\nNotes:\n" + "\n".join(f"- {n}" for n in sorted(notes)) + "\n"


def first_call_text(snippet: str, what: str, meta: dict[str, Any]) -> str:
    """Time ``snippet``'s run() in fresh processes (empty, then warm Triton cache); record it in meta."""
    cold, warm = first_call_seconds(snippet)
    meta["first_call_s"] = {"cold_cache": cold, "warm_cache": warm}
    return (f"\nFirst call ({what}, includes Triton JIT): {cold:.2f} s with an empty Triton cache, "
            f"{warm:.2f} s in a new process with the cache warm.\n")
