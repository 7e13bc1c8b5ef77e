"""Host time of one call, where the GPU work is tiny: what the Python side (validation, launcher
arguments, Triton's launch path) costs per call, and where it goes.

    python benchmarks/profile_host.py [--calls 300]

For each case: microseconds of host time per call (wall time of N calls with no synchronisation in
between, so the GPU never holds the host back), then cProfile's top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import torch

import fa_kernels

DEV, DT = "cuda", torch.bfloat16


def decode_step() -> Callable[[], Any]:
    kc = torch.randn(1, 4096, 4, 128, device=DEV, dtype=DT)
    vc = torch.randn_like(kc)
    q = torch.randn(1, 1, 32, 128, device=DEV, dtype=DT)
    k = torch.randn(1, 1, 4, 128, device=DEV, dtype=DT)
    v = torch.randn_like(k)
    lens = torch.full((1,), 4000, dtype=torch.int32, device=DEV)
    return lambda: fa_kernels.flash_attn_with_kvcache(q, kc, vc, k, v, cache_seqlens=lens, causal=True)


def attention_fwd() -> Callable[[], Any]:
    q, k, v = (torch.randn(1, 128, 8, 64, device=DEV, dtype=DT) for _ in range(3))
    return lambda: fa_kernels.flash_attn_func(q, k, v, causal=True)


def norm_fwd() -> Callable[[], Any]:
    x = torch.randn(64, 1024, device=DEV, dtype=DT)
    res = torch.randn_like(x)
    w = torch.ones(1024, device=DEV, dtype=DT)
    return lambda: fa_kernels.rms_norm_fn(x, w, None, residual=res, prenorm=True)


def sdpa_fwd() -> Callable[[], Any]:
    q, k, v = (torch.randn(1, 8, 128, 64, device=DEV, dtype=DT) for _ in range(3))
    return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def host_us(fn: Callable[[], Any], calls: int) -> float:
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    cases = {"flash_attn_with_kvcache decode": decode_step, "flash_attn_func fwd": attention_fwd,
             "rms_norm_fn fwd": norm_fwd, "torch sdpa fwd (floor)": sdpa_fwd}
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, fa_kernels {fa_kernels.__version__}")
    for name, make in cases.items():
        fn = make()
        print(f"\n== {name}: {host_us(fn, args.calls):.1f} us host time a call")
        if name.startswith("torch"):
            continue
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
