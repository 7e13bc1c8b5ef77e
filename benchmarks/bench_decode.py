"""Decoding over a KV cache: fa_kernels' flash_attn_with_kvcache (contiguous and paged cache) beside
SDPA on the same cache, measured in the same run.

bf16, head dim 128, GQA 8:1 (32 query heads, 4 KV heads), one new token a step: the step appends the
token's k/v into the cache and attends over the context. KV bytes read a step: 2 (K and V) * batch *
context * 4 * 128 * 2 bytes, as a fraction of the device-to-device copy bandwidth (read + write)
measured in the same run. Prints one markdown table; writes results/decode.*.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

import fa_kernels
from common import bench_ms, copy_bandwidth_tbs, header, prime_memory, save, table
from fa_kernels.calls import CacheAttnProblem
from fa_kernels.triton import decode

BATCHES = (1, 8, 64)
CONTEXTS = (4096, 32768, 131072)
NHEADS, NHEADS_K, HEAD_DIM = 32, 4, 128
GROUP = NHEADS // NHEADS_K
DEVICE, DTYPE = "cuda", torch.bfloat16
PAGE = 256  # flash_attn's paged-KV page size; the kernel takes any


def kv_bytes(batch: int, context: int) -> int:
    return 2 * batch * context * NHEADS_K * HEAD_DIM * 2


def splits_used(batch: int, context: int) -> int:
    p = CacheAttnProblem(batch=batch, nheads=NHEADS, nheads_k=NHEADS_K, head_dim=HEAD_DIM, max_seqlen_q=1,
                         capacity=context, seqlen_new=1, softmax_scale=1.0, causal=True, window=(-1, 0),
                         softcap=0.0, num_splits=0, page_size=0, varlen_q=False, keys_from_cu=False)
    cfg = decode.config(p, torch.device(DEVICE))
    return decode.num_splits(batch * NHEADS_K, triton.cdiv(context, cfg.block_n), decode.sm_count(
        torch.device(DEVICE)))


class Step:
    """One decoding step's tensors: a full cache (context - 1 old tokens, the new one appended)."""

    def __init__(self, batch: int, context: int) -> None:
        self.batch, self.context = batch, context
        shape = (batch, context, NHEADS_K, HEAD_DIM)
        self.k_cache = torch.randn(shape, device=DEVICE, dtype=DTYPE)
        self.v_cache = torch.randn(shape, device=DEVICE, dtype=DTYPE)
        self.q = torch.randn(batch, 1, NHEADS, HEAD_DIM, device=DEVICE, dtype=DTYPE)
        self.k = torch.randn(batch, 1, NHEADS_K, HEAD_DIM, device=DEVICE, dtype=DTYPE)
        self.v = torch.randn_like(self.k)
        self.seqlens = torch.full((batch,), context - 1, dtype=torch.int32, device=DEVICE)
        # the same storage as pages, each sequence's in a shuffled order (a paged cache's pages are
        # scattered; attention over one sequence's keys does not depend on their order)
        per_seq = context // PAGE
        self.k_pages = self.k_cache.view(batch * per_seq, PAGE, NHEADS_K, HEAD_DIM)
        self.v_pages = self.v_cache.view(batch * per_seq, PAGE, NHEADS_K, HEAD_DIM)
        order = torch.argsort(torch.rand(batch, per_seq, device=DEVICE), dim=1)
        first = torch.arange(batch, device=DEVICE)[:, None] * per_seq
        self.table = (first + order).to(torch.int32)

    def ours(self) -> torch.Tensor:
        return fa_kernels.flash_attn_with_kvcache(self.q, self.k_cache, self.v_cache, self.k, self.v,
                                                  cache_seqlens=self.seqlens, causal=True)

    def ours_paged(self) -> torch.Tensor:
        return fa_kernels.flash_attn_with_kvcache(self.q, self.k_pages, self.v_pages, self.k, self.v,
                                                  cache_seqlens=self.seqlens, block_table=self.table,
                                                  causal=True)

    def sdpa(self, append: bool = True) -> torch.Tensor:
        """SDPA's flash backend: the cache updated by index, the 8 query heads of a KV head as 8 query
        rows over its keys (exact for one new token: it sees every key)."""
        if append:
            self.k_cache[:, -1] = self.k[:, 0]
            self.v_cache[:, -1] = self.v[:, 0]
        q = self.q.view(self.batch, NHEADS_K, GROUP, HEAD_DIM)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(q, self.k_cache.transpose(1, 2), self.v_cache.transpose(1, 2))
        return out.reshape(self.batch, 1, NHEADS, HEAD_DIM)

    def check(self) -> None:
        """Ours, contiguous and paged, against SDPA over the whole cache (no append: the paged view
        reorders each sequence's keys, which attention of a last-position query does not see)."""
        full = torch.full_like(self.seqlens, self.context)
        want = self.sdpa(append=False).float()
        for name, (kc, vc, pages) in {"contiguous": (self.k_cache, self.v_cache, None),
                                      "paged": (self.k_pages, self.v_pages, self.table)}.items():
            got = fa_kernels.flash_attn_with_kvcache(self.q, kc, vc, cache_seqlens=full, block_table=pages,
                                                     causal=True).float()
            err = ((got - want).norm() / want.norm()).item()
            if not err < 2e-2:
                raise AssertionError(f"batch {self.batch} context {self.context}: ours ({name}) vs SDPA "
                                     f"relative error {err:.2e}")


def graphed(fn: Callable[[], Any]) -> Callable[[], Any]:
    """The step captured in a CUDA graph: what a serving loop replays, without per-launch host time."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


STEADY_STEPS = 8  # steps a steady replay runs back to back
STEADY_BYTES = 1 << 30  # the caches a steady replay cycles through hold at least this much (L2: 50-60 MB)


def steady_caches(batch: int, context: int) -> int:
    """How many caches a steady replay cycles through: 2-8, 1 GiB or more together where 8 reach it."""
    return min(STEADY_STEPS, max(2, -(-STEADY_BYTES // kv_bytes(batch, context))))


def steady(batch: int, context: int, first: Step) -> tuple[dict[str, Callable[[], Any]], list[Step]]:
    """Decoding as a serving loop runs it: STEADY_STEPS steps back to back in one CUDA graph, so
    the launch of the graph itself (~10 us on an H200, paid once per replay) is spread over them as a
    loop's next launch overlaps the running step. The steps cycle through caches holding at least
    STEADY_BYTES where STEADY_STEPS of them reach it (steady_caches), so no step finds its keys in L2
    from the one before. Timed per step. -> the replays,
    and the steps they read: the caller keeps those alive while replaying (a graph holds no reference
    to the tensors it was captured with)."""
    count = steady_caches(batch, context)
    steps = [first] + [Step(batch, context) for _ in range(count - 1)]
    runs = {}
    for name in ("ours", "sdpa"):
        fns = [getattr(steps[i % count], name) for i in range(STEADY_STEPS)]
        runs[f"{name} steady"] = graphed(lambda fns=fns: [fn() for fn in fns])
    return runs, steps


def case(batch: int, context: int, copy_tbs: float) -> dict[str, Any]:
    row: dict[str, Any] = {"batch": batch, "context": context, "KV MB": kv_bytes(batch, context) / 1e6}
    free = torch.cuda.mem_get_info()[0]
    needs = kv_bytes(batch, context) * steady_caches(batch, context)  # the steady replay's caches
    if needs * 1.15 > free:
        row["note"] = f"skipped: needs {needs / 2**30:.1f} GiB, {free / 2**30:.1f} free"
        return row
    step = Step(batch, context)
    steps = {"ours": step.ours, "paged": step.ours_paged, "sdpa": step.sdpa}
    try:
        step.check()
    except RuntimeError as exc:  # SDPA's flash backend refused the call: time ours alone
        row["note"] = f"sdpa: {str(exc).splitlines()[0][:80]}"
        del steps["sdpa"]
    for name in ("ours", "sdpa"):
        if name in steps:
            steps[f"{name} graph"] = graphed(steps[name])
    alive: list[Step] = []
    if "sdpa" in steps:
        runs, alive = steady(batch, context, step)
        steps.update(runs)
    for name, fn in steps.items():
        us = bench_ms(fn) * 1e3 / (STEADY_STEPS if name.endswith("steady") else 1)
        row[f"{name} us"] = us
        row[f"{name} %copy"] = 100 * kv_bytes(batch, context) / (us * 1e-6) / (copy_tbs * 1e12)
    if "sdpa us" in row:
        row["vs sdpa"] = row["sdpa us"] / row["ours us"]
    row["splits"] = splits_used(batch, context)
    del step, steps, alive
    torch.cuda.empty_cache()
    return row


COLUMNS = ["batch", "context", "KV MB", "ours us", "ours %copy", "paged us", "paged %copy", "sdpa us",
           "sdpa %copy", "vs sdpa", "ours graph us", "ours graph %copy", "sdpa graph us",
           "sdpa graph %copy", "ours steady us", "ours steady %copy", "sdpa steady us", "sdpa steady %copy",
           "splits", "note"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="*", default=BATCHES)
    parser.add_argument("--contexts", type=int, nargs="*", default=CONTEXTS)
    args = parser.parse_args()
    prime_memory()
    copy_tbs = copy_bandwidth_tbs()
    rows = []
    for batch in args.batches:
        for context in args.contexts:
            rows.append(case(batch, context, copy_tbs))
            print(rows[-1], flush=True)
    meta = header() | {"copy_tbs": copy_tbs, "page_size": PAGE, "nheads": NHEADS, "nheads_k": NHEADS_K,
                       "head_dim": HEAD_DIM}
    text = (f"# Decoding over a KV cache, bf16 ({meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, "
            f"{meta['date']})\n\n"
            f"Method: one new token a step (its k/v appended into the cache, then attention over the context),"
            f" {NHEADS} query heads, {NHEADS_K} KV heads (GQA {GROUP}:1), head dim {HEAD_DIM}, causal. "
            "Median of triton.testing.do_bench (L2 flushed between runs), in microseconds. `%copy`: KV-cache "
            "bytes read a step (2 x batch x context x 4 x 128 x 2) per second as a percentage of the "
            f"device-to-device copy bandwidth measured in this run ({copy_tbs:.2f} TB/s, read + write). "
            f"`ours`: flash_attn_with_kvcache on a contiguous cache; `paged`: the same storage as {PAGE}-token "
            "pages in shuffled order through a block table; `sdpa`: index-copy of the new k/v, then SDPA's flash "
            "backend with each KV head's 8 query heads as 8 query rows (exact for one token); `graph`: the "
            "step replayed from a CUDA graph (no host launch time), one step a replay, so each time includes the "
            f"graph's own launch; `steady`: {STEADY_STEPS} steps back to back in one graph, as a serving loop "
            "runs them (the graph's launch spread over them), cycling through 2-8 caches (at least "
            f"{STEADY_BYTES >> 30} GiB together where 8 reach it) so no step reads the one before's keys from L2; "
            "per step. `splits`: KV splits our heuristic "
            "chose. `vs sdpa`: SDPA time / ours (eager).\n\n"
            + table(rows, [c for c in COLUMNS if any(c in r for r in rows)]))
    print(text)
    save("decode", meta, rows, text)


if __name__ == "__main__":
    main()
