"""Try forward launch shapes for the Triton norm on this GPU (warps, rows a program), beside upstream
flash_attn's Triton norm in the same run: prints each one's CUDA-graph replay time (the kernel without
host time) and the best, to fix fwd_rows()/_warps() in fa_kernels/triton/norm.py.

    python benchmarks/sweep_norm_fwd.py [--rep 50]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
from bench_norm import SHAPES, upstream

import fa_kernels
from fa_kernels.triton import norm as N
from timing import forward_call, graph_ms

WARPS = (4, 8, 16)
ROWS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rep", type=int, default=50)
    args = parser.parse_args()
    peer = upstream()
    default_rows, default_warps = N.fwd_rows, N._warps
    for (m, n), p in itertools.product(SHAPES, (0.0, 0.1)):
        x, r = (torch.randn(m, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        w = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        gbytes = 4 * m * n * 2 / 1e9  # x, residual read; y, s written
        results: dict[str, float] = {}

        def timed(name: str, run: Callable[[], object]) -> None:
            ms, _ = graph_ms(forward_call(run), rep=args.rep)
            if ms is not None:
                results[name] = ms

        def ours() -> object:
            return fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p, prenorm=True, backend="triton")

        if peer is not None:
            timed("flash_attn", lambda: peer(x, w, None, residual=r, dropout_p=p, prenorm=True))
        N.fwd_rows, N._warps = default_rows, default_warps
        timed("ours (default)", ours)
        for warps, rows in itertools.product(WARPS, ROWS):
            if rows * n > 16384 or warps * 32 * 4 > rows * n:
                continue
            N.fwd_rows = lambda n_, d_, rows=rows: rows  # type: ignore[assignment]
            N._warps = lambda b_, warps=warps: warps  # type: ignore[assignment]
            timed(f"warps {warps} rows {rows}", ours)
        N.fwd_rows, N._warps = default_rows, default_warps
        best = min(results, key=results.__getitem__)
        print(f"\n{m}x{n} p={p}: best {best} {results[best]:.4f} ms")
        for name, ms in sorted(results.items(), key=lambda kv: kv[1]):
            print(f"  {ms:.4f} ms  {gbytes / ms:5.2f} TB/s  {name}")


if __name__ == "__main__":
    main()
