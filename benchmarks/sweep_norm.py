"""Try backward launch shapes for the fused norm on this GPU (programs per SM, warps, row-loop
pipelining); prints ms per case and the best, to fix bwd_launch() in fa_kernels/triton/norm.py.
Times are the backward's kernel time (timing.kernel_ms: the GPU kernels' durations, summed), so a host
slower than the GPU (a 16384x4096 backward on the H200 machine's CPU) does not decide the winner; upstream
flash_attn's Triton norm (from .bench_deps/, see bench_norm.py) is timed the same way when present.

    python benchmarks/sweep_norm.py [MxN [per_sm,warps,stages,rows ...]]"""

from __future__ import annotations

import itertools
import sys

import torch
from bench_norm import upstream

import fa_kernels
from fa_kernels.triton import norm as N
from timing import kernel_ms

SHAPES = [(16384, 4096), (32768, 8192), (65536, 2048)]


def main() -> None:
    options = [N.BwdLaunch(per_sm, warps, 3, rows)
               for per_sm, warps, rows in itertools.product((1, 2, 4, 8), (4, 8, 16), (1, 2, 4))]
    shapes = SHAPES
    if len(sys.argv) > 1:  # e.g. "32768x8192 2,16,1,2 2,16,2,1": one shape, given options only
        m, n = (int(v) for v in sys.argv[1].split("x"))
        shapes = [(m, n)]
        options = [N.BwdLaunch(*(int(v) for v in o.split(","))) for o in sys.argv[2:]] or options
    peer = upstream()
    for (m, n), p in itertools.product(shapes, (0.0, 0.1)):
        x, r = (torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
        w = torch.randn(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        y, s = fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p, prenorm=True, backend="triton")
        dy, ds = torch.randn_like(y), torch.randn_like(s)
        results = []
        for opt in options:
            if opt.num_warps * 32 * 4 > n * opt.rows:  # fewer than 4 elements a thread: pointless
                continue
            opt = N.BwdLaunch(opt.programs_per_sm, opt.num_warps,
                              N._stages_that_fit(n, opt.rows, opt.num_stages), opt.rows)
            N.bwd_launch = lambda n_, d_, opt=opt: opt  # type: ignore[assignment]
            ms, why = kernel_ms(lambda: torch.autograd.grad((y, s), (x, r, w), (dy, ds), retain_graph=True))
            if ms is None:
                print("failed", opt, why)
                continue
            results.append((ms, str(opt)))
        if peer is not None:
            py, ps = peer(x, w, None, residual=r, dropout_p=p, prenorm=True)
            ms, why = kernel_ms(lambda: torch.autograd.grad((py, ps), (x, r, w), (dy, ds), retain_graph=True))
            results.append((ms, "upstream flash_attn") if ms is not None else (float("inf"), why))
        results.sort(key=lambda t: t[0])
        print(f"{m}x{n} p={p}: " + "; ".join(f"{ms:.4f} {o}" for ms, o in results[:6]), flush=True)


if __name__ == "__main__":
    main()
