"""Is backend="auto" slower than the same backend by name, or only measured so? (issue #17: at
16384x4096 the norm backward read 0.279 ms under auto and 0.187 ms under triton, the very same kernels.)

Times the backward of rms_norm_fn (bf16, prenorm, residual) for auto, triton and cuda, three rounds in
rotating order with benchmarks/timing.measure, and each one's host time per call (the Python and launch
work of one torch.autograd.grad, not waiting for the GPU). Prints one line per measurement.

    python benchmarks/norm_order_check.py [--shape 16384 4096] [--p 0.0]
"""

from __future__ import annotations

import argparse
import time

import torch

import fa_kernels
from timing import backward_call, measure


def host_us(call, n: int = 50) -> float:  # type: ignore[no-untyped-def]
    call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        call()
    host = (time.perf_counter() - start) / n * 1e6
    torch.cuda.synchronize()
    return host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=2, default=[16384, 4096])
    parser.add_argument("--p", type=float, default=0.0)
    args = parser.parse_args()
    m, n = args.shape
    x, r = (torch.randn(m, n, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    w = torch.randn(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    names = ["auto", "triton"] + (["cuda"] if "cuda" in fa_kernels.available() else [])

    def runner(name: str):  # type: ignore[no-untyped-def]
        return lambda: fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=args.p, prenorm=True, eps=1e-6,
                                              backend=name)

    for round_ in range(3):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            t = measure(runner(name), (x, r, w), "bwd", graphs=False)
            us = host_us(backward_call(runner(name), (x, r, w)))
            print(f"round {round_} {name:>6}: bwd {t.ms:.4f} ms, host {us:.0f} us a call", flush=True)


if __name__ == "__main__":
    main()
