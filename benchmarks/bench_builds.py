"""The compiled (CUDA C++) backend of two builds of fa_kernels, same shapes, same run: e.g. the
stable-ABI wheel against a build with the ATen glue, to show the glue costs nothing.

Each build lives in its own interpreter (a venv), so this script runs in two modes:
  python bench_builds.py --measure LABEL            time this interpreter's fa_kernels, print one JSON line
  python bench_builds.py --compare A=PY_A B=PY_B    run --measure in each (A, B, A again: the repeat shows
                                                    the run's noise), print a markdown table of ms and B/A
Timing: common.bench_ms (triton do_bench median after warmup, clocks warmed), bf16, backend="cuda".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

NORM_SHAPES = [(16384, 4096), (32768, 8192), (65536, 2048)]
ATTN_SHAPES = [(4, 4096, 16, 128, False), (4, 4096, 16, 128, True), (8, 2048, 32, 64, True)]


def measure(label: str) -> dict[str, Any]:
    import torch

    import fa_kernels
    from common import bench_ms, header

    rows: dict[str, float] = {}
    for m, n in NORM_SHAPES:
        x = torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        res = torch.randn_like(x, requires_grad=True)
        w = torch.ones(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)

        def norm() -> Any:
            return fa_kernels.rms_norm_fn(x, w, None, residual=res, prenorm=True, backend="cuda")

        rows[f"norm fwd {m}x{n}"] = bench_ms(norm)
        out, resid = norm()
        grads = (torch.randn_like(out), torch.randn_like(resid))
        rows[f"norm bwd {m}x{n}"] = bench_ms(
            lambda: torch.autograd.grad((out, resid), (x, res, w), grads, retain_graph=True))
    for b, s, h, d, causal in ATTN_SHAPES:
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        name = f"attn {b}x{s}x{h}x{d}{' causal' if causal else ''}"
        rows[f"{name} fwd"] = bench_ms(
            lambda: fa_kernels.flash_attn_func(q, k, v, causal=causal, backend="cuda"))
        o = fa_kernels.flash_attn_func(q, k, v, causal=causal, backend="cuda")
        do = torch.randn_like(o)
        rows[f"{name} bwd"] = bench_ms(
            lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
    return {"label": label, "fa_kernels": fa_kernels.__version__, "file": fa_kernels.__file__,
            **header(), "ms": rows}


def compare(specs: list[str]) -> str:
    runs = []
    order = [*specs, specs[0]]  # A, B, A again
    for spec in order:
        label, python = spec.split("=", 1)
        proc = subprocess.run([python, __file__, "--measure", label], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=False)
        if proc.returncode:
            raise SystemExit(f"{label}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    a, b, a2 = runs
    lines = [f"# compiled backend, two builds, one run ({a['gpu']}, torch {a['torch']}, triton {a['triton']}, "
             f"{a['date']})", "",
             f"A = {a['label']} ({a['fa_kernels']}), B = {b['label']} ({b['fa_kernels']}); "
             "ms = do_bench median, bf16, backend='cuda'; A again measured after B shows the noise.", "",
             "| case | A ms | B ms | A again ms | B/A |", "|---|---|---|---|---|"]
    for case, ms_a in a["ms"].items():
        ms_b, ms_a2 = b["ms"][case], a2["ms"][case]
        lines.append(f"| {case} | {ms_a:.3f} | {ms_b:.3f} | {ms_a2:.3f} | {ms_b / ((ms_a + ms_a2) / 2):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--measure", metavar="LABEL")
    group.add_argument("--compare", nargs=2, metavar="LABEL=PYTHON")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
    else:
        print(compare(args.compare))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
