"""Try tile configs and split counts for the KV-cache attention kernel on this GPU; prints the best per
case (to fix decode.config and decode.num_splits' constants: no autotuning at run time).

Each step is timed as CUDA-graph replay (bench_decode.graphed), as a serving loop runs it: eager timings
at small batch x context measure the host's launch time, not the kernels."""

from __future__ import annotations

import itertools

import torch
from bench_decode import Step, graphed, kv_bytes

from common import bench_ms, copy_bandwidth_tbs
from fa_kernels.triton import decode

CONFIGS = [decode.Config(16, n, w, s) for n, w, s in [
    (64, 4, 2), (64, 4, 3), (64, 4, 4), (64, 8, 3), (128, 4, 2), (128, 8, 2), (128, 8, 3), (32, 4, 4)]]
CASES = [(1, 131072), (1, 32768), (8, 32768), (8, 4096), (64, 4096), (64, 32768)]
SPLIT_TARGETS = [2, 3, 4, 6]  # CTAs an SM the split heuristic aims for (when it splits: batch 1 and 8 here)


def main() -> None:
    copy_tbs = copy_bandwidth_tbs()
    print(f"copy {copy_tbs:.2f} TB/s", flush=True)
    for batch, context in CASES:
        step = Step(batch, context)
        results = []
        targets = SPLIT_TARGETS if batch * 4 < decode.sm_count(torch.device("cuda")) else [decode.CTAS_PER_SM]
        for cfg, per_sm, paged in itertools.product(CONFIGS, targets, (False, True)):
            decode.config = lambda p, d, cfg=cfg: cfg  # type: ignore[assignment]
            decode.CTAS_PER_SM = per_sm
            try:
                us = bench_ms(graphed(step.ours_paged if paged else step.ours), warmup=10, rep=40) * 1e3
            except Exception as exc:
                print("failed", cfg, str(exc).splitlines()[0][:120], flush=True)
                continue
            frac = kv_bytes(batch, context) / (us * 1e-6) / (copy_tbs * 1e12)
            results.append((frac, us, cfg, per_sm, paged))
        for paged in (False, True):
            best = sorted((r for r in results if r[4] == paged), key=lambda r: -r[0])[:5]
            print(f"b={batch} ctx={context} paged={paged}: "
                  + "; ".join(f"{100 * f:.0f}% {us:.0f}us {c.block_n}/{c.num_warps}/{c.num_stages} x{k}"
                              for f, us, c, k, _ in best), flush=True)
        del step
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
