"""The one timing method of every benchmark here: the same for every implementation and both directions.

- Inputs: one set per case, given to every implementation; the output gradients come from one seeded
  generator, so every implementation's backward gets the same values.
- Forward: the call under torch.no_grad().
- Backward: torch.autograd.grad of that implementation's own forward outputs with retain_graph=True,
  the output gradients given. The forward runs once, outside the timed region.
- Warmup: WARMUP_CALLS untimed calls (Triton JIT, torch.compile), then the clocks warmed, then
  triton.testing.do_bench (its own warmup; L2 flushed before every call); the time is its median.
- `graph` column (forward only): after the warmup the same call is captured once in a torch.cuda.CUDAGraph and the
  replay timed the same way: the kernels' time without Python, autograd and launch overhead. Where
  capture fails (a CPU sync, an op that cannot be captured) the column is empty and the note says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import triton

WARMUP_CALLS = 3
DO_BENCH_WARMUP_MS = 25
DO_BENCH_REP_MS = 100

METHOD = (
    "Method (benchmarks/timing.py, the same for every implementation): same inputs and output "
    f"gradients; {WARMUP_CALLS} untimed calls, clocks warmed, then the median of triton.testing.do_bench "
    f"(warmup {DO_BENCH_WARMUP_MS} ms, rep {DO_BENCH_REP_MS} ms, L2 flushed before each call). "
    "fwd = the call under torch.no_grad(); bwd = torch.autograd.grad of the implementation's own "
    "forward outputs with retain_graph=True, gradients given (the forward is not timed). `graph` = the "
    "same call captured once in a torch.cuda.CUDAGraph after the warmup, replay timed the same way "
    "(no Python, autograd or launch overhead); `-` where capture failed (notes below the table). "
    "`kernel` (backward) = the durations of the GPU kernels one backward ran, summed (torch.profiler), "
    "the backward's device time without host time or the gaps between kernels. "
    "Each implementation is measured in two passes over all of them, the second in reverse order, and "
    "the lower median kept (the one measured first in a case was slower)."
)

BWD_GRAPH_NOTE = ("no graph column for backward: a failed capture of one (H200, torch 2.11) left torch's CUDA "
                  "RNG raising 'Offset increment outside graph capture' for the rest of the run")
Outputs = torch.Tensor | Sequence[torch.Tensor | None]
Call = Callable[[], object]


def warm_clocks(seconds: float = 0.2) -> None:
    """Keep the SMs busy for a moment: after a CPU-bound pause (torch.compile compiling) the GPU idles
    down its clocks, and the next measurement would start slow."""
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(8):
            a @ a
        torch.cuda.synchronize()


def median_ms(fn: Call, warmup: int = DO_BENCH_WARMUP_MS, rep: int = DO_BENCH_REP_MS) -> float:
    """The measurement itself: warmup calls, warm clocks, do_bench median."""
    for _ in range(WARMUP_CALLS):
        fn()
    warm_clocks()
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


@dataclass
class Timing:
    ms: float | None
    graph_ms: float | None = None
    note: str = ""  # why a column is empty
    kernel_ms: float | None = None  # backward: the GPU work alone (kernel_ms below)

    @property
    def device_ms(self) -> float | None:
        """The GPU's share: the graph replay (forward) or the kernels' durations (backward) where
        measured, else the median. What decides a backend choice: a host slower than the GPU (the H200
        machine's, at 16384x4096) would otherwise pick by Python time, which a training loop hides
        behind the queue of kernels it runs ahead."""
        return self.graph_ms if self.graph_ms is not None else self.kernel_ms if self.kernel_ms is not None else self.ms


def _tensors(outs: Outputs) -> list[torch.Tensor]:
    items = [outs] if isinstance(outs, torch.Tensor) else list(outs)
    return [t for t in items if isinstance(t, torch.Tensor) and t.requires_grad]


def output_grads(outs: Sequence[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """One gradient per output, the same values for every implementation with the same output shapes."""
    grads = []
    for i, t in enumerate(outs):
        gen = torch.Generator(device=t.device).manual_seed(seed + i)
        grads.append(torch.randn(t.shape, generator=gen, device=t.device, dtype=t.dtype))
    return grads


def forward_call(run: Callable[[], Outputs]) -> Call:
    def call() -> None:
        with torch.no_grad():
            run()
    return call


def backward_call(run: Callable[[], Outputs], inputs: Sequence[torch.Tensor]) -> Call:
    """The backward of one forward, replayable: the graph is retained, the outputs' gradients fixed."""
    outs = _tensors(run())
    grads = output_grads(outs)
    return lambda: torch.autograd.grad(outs, list(inputs), grads, retain_graph=True)


def graph_ms(call: Call, rep: int = DO_BENCH_REP_MS) -> tuple[float | None, str]:
    """The call captured once in a CUDA graph (after warming up on a side stream, as capture wants),
    its replay timed by median_ms. (None, why) where capture is impossible."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                call()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            call()
    except Exception as exc:  # any capture failure: report it, keep measuring the others
        torch.cuda.synchronize()
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
        return None, f"capture failed: {type(exc).__name__}: {first}"
    try:
        return median_ms(graph.replay, rep=rep), ""
    finally:
        del graph


def kernel_ms(call: Call, reps: int = 20) -> tuple[float | None, str]:
    """The device time of one call: the durations of the GPU kernels and copies it ran, summed
    (torch.profiler over CUPTI), averaged over ``reps`` calls. Neither the host's Python, autograd and
    launch time nor the gaps between kernels count: what the graph column shows for the forward, for a
    backward, whose capture is off (BWD_GRAPH_NOTE). Where the host is slower than the GPU (a short
    backward on a slow host) the median and this differ, and this is the kernels' own share."""
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        call()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                call()
            torch.cuda.synchronize()
        us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    except Exception as exc:  # no CUPTI, a profiler already running
        return None, f"no kernel time: {type(exc).__name__}: {str(exc).strip()[:80]}"
    if us <= 0:
        return None, "no kernel time: the profiler saw no GPU work"
    return us / reps / 1e3, ""


def measure(run: Callable[[], Outputs], inputs: Sequence[torch.Tensor], direction: str, *,
            graphs: bool = True, rep: int = DO_BENCH_REP_MS) -> Timing:
    """Time one implementation in one direction ("fwd" or "bwd") by the method above; ``graphs``: the
    forward's graph column (a backward always gets its kernel column)."""
    if direction not in ("fwd", "bwd"):
        raise ValueError(f"direction={direction!r}: fwd or bwd")
    try:
        call = forward_call(run) if direction == "fwd" else backward_call(run, inputs)
        ms = median_ms(call, rep=rep)
    except Exception as exc:  # e.g. an SDPA backend that does not take this shape
        return Timing(None, None, f"failed: {type(exc).__name__}: {str(exc).strip()[:100]}")
    if direction == "bwd":  # on the H200 a failed capture of a backward left torch's CUDA RNG unusable
        kms, why = kernel_ms(call)  # ("Offset increment outside graph capture"): kernel time instead
        return Timing(ms, None, why or BWD_GRAPH_NOTE, kms)
    if not graphs:
        return Timing(ms)
    gms, note = graph_ms(call, rep=rep)
    return Timing(ms, gms, note)


def measure_all(impls: dict[str, Callable[[], Outputs]], inputs: Sequence[torch.Tensor], direction: str, *,
                graphs: bool = True, rep: int = DO_BENCH_REP_MS) -> dict[str, Timing]:
    """Every implementation in two passes, the second in reverse order, keeping each one's lower median:
    on the H200 the implementation measured first in a case read up to 1.8x slower than the same kernels
    measured later (benchmarks/results/issue17_h200), so no one may be first only. The graph and kernel
    columns too are measured in both passes."""
    first = {name: measure(run, inputs, direction, graphs=graphs, rep=rep) for name, run in impls.items()}
    second = {name: measure(run, inputs, direction, graphs=graphs, rep=rep)
              for name, run in reversed(list(impls.items()))}
    return {name: Timing(_lower(t.ms, second[name].ms), _lower(t.graph_ms, second[name].graph_ms),
                         t.note or second[name].note, _lower(t.kernel_ms, second[name].kernel_ms))
            for name, t in first.items()}


def _lower(a: float | None, b: float | None) -> float | None:
    """The lower of two measurements of one thing, either of which may be missing."""
    return min(a, b) if a is not None and b is not None else a if a is not None else b
