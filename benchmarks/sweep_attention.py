"""Try block configs for the attention kernels on this GPU; prints the best per case (to fix the
per-shape table in fa_kernels/triton/attention.py: no autotuning at run time)."""

from __future__ import annotations

import itertools

import torch

import fa_kernels
from common import bench_ms
from fa_kernels.triton import attention as A

FWD = [A.Config(*c) for c in [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 4),
                               (64, 64, 4, 3), (128, 32, 4, 4), (64, 128, 4, 3), (128, 128, 4, 3)]]
BWD = [(A.Config(*a), A.Config(*b)) for a, b in [
    ((64, 128, 8, 2), (128, 64, 8, 2)), ((64, 128, 8, 3), (128, 64, 8, 3)),
    ((32, 128, 4, 3), (128, 32, 4, 3)), ((64, 64, 4, 3), (64, 64, 4, 3)),
    ((128, 128, 8, 2), (128, 128, 8, 2)), ((64, 128, 4, 2), (128, 64, 4, 2)),
    ((32, 64, 4, 3), (64, 32, 4, 3))]]


def main() -> None:
    seqlen = 4096
    for head_dim, causal in itertools.product((64, 128), (False, True)):
        batch, nheads = 16384 // seqlen, 2048 // head_dim
        q, k, v = (torch.randn(batch, seqlen, nheads, head_dim, device="cuda", dtype=torch.bfloat16,
                               requires_grad=True) for _ in range(3))
        flops = 4 * batch * seqlen * seqlen * nheads * head_dim / (2 if causal else 1)
        results = []
        for cfg in FWD:
            A.fwd_config = lambda p, d, cfg=cfg: cfg  # type: ignore[assignment]
            try:
                ms = bench_ms(lambda: fa_kernels.flash_attn_func(q, k, v, causal=causal), warmup=10, rep=50)
                results.append((flops / ms / 1e9, cfg))
            except Exception as exc:
                print("fwd", cfg, "failed:", str(exc).splitlines()[0][:100])
        results.sort(key=lambda r: -r[0])
        print(f"FWD hd={head_dim} causal={causal}: " + "; ".join(f"{t:.0f} {c}" for t, c in results[:4]), flush=True)
        A.fwd_config = lambda p, d, cfg=results[0][1]: cfg  # type: ignore[assignment]
        out = fa_kernels.flash_attn_func(q, k, v, causal=causal)
        dout = torch.randn_like(out)
        bresults = []
        for pair in BWD:
            A.bwd_config = lambda p, d, pair=pair: pair  # type: ignore[assignment]
            try:
                y = fa_kernels.flash_attn_func(q, k, v, causal=causal)
                ms = bench_ms(lambda: torch.autograd.grad(y, (q, k, v), dout, retain_graph=True), warmup=10, rep=50)
                bresults.append((2.5 * flops / ms / 1e9, pair))
            except Exception as exc:
                print("bwd", pair, "failed:", str(exc).splitlines()[0][:100])
        bresults.sort(key=lambda r: -r[0])
        print(f"BWD hd={head_dim} causal={causal}: " + "; ".join(f"{t:.0f} {c}" for t, c in bresults[:3]), flush=True)


if __name__ == "__main__":
    main()
