"""Where one decoding step's time goes under CUDA-graph replay: each kernel's device time, the gaps
between them, and the replay's median (issue #13: at batch 1 x 128k a step carries ~20 us that do not
scale with the cache).

    python benchmarks/profile_decode.py [--cases 1x131072 1x32768 8x32768] [--replays 20]

For each case and each setting of fa_kernels.triton.decode.FUSED (the combine in the last split's CTA,
or a separate combine kernel): the replay timed as bench_decode.py times it (do_bench median, L2
flushed), then the replays traced by torch.profiler, kernels read from the trace's timestamps: per
kernel its mean duration, and per replay the span from the first kernel's start to the last one's end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from bench_decode import Step, graphed, kv_bytes

from common import bench_ms, copy_bandwidth_tbs, prime_memory
from fa_kernels.triton import decode


def kernels_of(trace: Path) -> list[dict[str, Any]]:
    """The trace's GPU kernels (chrome trace "X" events of category kernel), by start time."""
    events = json.loads(trace.read_text())["traceEvents"]
    found = [e for e in events if e.get("ph") == "X" and e.get("cat") == "kernel"]
    return sorted(found, key=lambda e: float(e["ts"]))


def replay_spans(kernels: list[dict[str, Any]], per_replay: int) -> list[float]:
    """Microseconds from the first kernel's start to the last one's end, per replay."""
    spans = []
    for i in range(0, len(kernels) - per_replay + 1, per_replay):
        group = kernels[i:i + per_replay]
        spans.append(max(float(e["ts"]) + float(e["dur"]) for e in group) - float(group[0]["ts"]))
    return spans


def profile(replay: Any, replays: int) -> tuple[dict[str, float], list[float]]:
    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            replay()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        kernels = kernels_of(path)
    durations: dict[str, list[float]] = defaultdict(list)
    for e in kernels:
        durations[str(e["name"])[:60]].append(float(e["dur"]))
    per_replay = max(1, len(kernels) // replays)
    return {k: statistics.mean(v) for k, v in durations.items()}, replay_spans(kernels, per_replay)


def case(batch: int, context: int, copy_tbs: float, replays: int) -> None:
    step = Step(batch, context)
    floor_us = kv_bytes(batch, context) / (copy_tbs * 1e12) * 1e6
    print(f"\n== batch {batch} x context {context}: KV {kv_bytes(batch, context) / 1e6:.0f} MB, "
          f"{floor_us:.1f} us at the copy bandwidth")
    settings = (True, False) if hasattr(decode, "FUSED") else (None,)
    for fused in settings:
        if fused is not None:
            decode.FUSED = fused
        replay = graphed(step.ours)
        us = bench_ms(replay) * 1e3
        kernels, spans = profile(replay, replays)
        print(f"-- FUSED={fused}: graph replay median {us:.1f} us = {100 * floor_us / us:.1f}% of copy; "
              f"traced span a replay: median {statistics.median(spans):.1f} us; "
              f"kernels summed {sum(kernels.values()):.1f} us")
        for name, mean_us in kernels.items():
            print(f"   {mean_us:8.1f} us  {name}")
    if settings[0] is not None:
        decode.FUSED = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["1x131072", "1x32768", "8x32768"])
    parser.add_argument("--replays", type=int, default=20)
    args = parser.parse_args()
    prime_memory()
    copy_tbs = copy_bandwidth_tbs()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; copy {copy_tbs:.2f} TB/s")
    for spec in args.cases:
        batch, context = (int(x) for x in spec.split("x"))
        case(batch, context, copy_tbs, args.replays)


if __name__ == "__main__":
    main()
