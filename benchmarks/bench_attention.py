"""Attention, bf16: fa_kernels' Triton backend (and its CUDA C++ backend, when the build has it) vs
SDPA's flash and cuDNN backends, measured in the same run.

batch * seqlen = 16k tokens, nheads * headdim = 2048; FLOPs = 4 * b * s^2 * h * d (halved if causal),
fwd+bwd counted as 3.5x fwd (REFERENCE.md section 7). Prints one table; writes results/attention.*.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import fa_kernels
from common import bench_ms, first_call_seconds, header, save, table
from fa_kernels.cuda import attention as cuda_attention

SEQLENS = [512, 1024, 2048, 4096, 8192, 16384]
CUDA = cuda_attention.compiled()


def tflops(flops: float, ms: float) -> float:
    return flops / ms / 1e9


def case(head_dim: int, causal: bool, seqlen: int, bwd: bool) -> dict[str, float | None]:
    batch, nheads = 16384 // seqlen, 2048 // head_dim
    q, k, v = (torch.randn(batch, seqlen, nheads, head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=bwd) for _ in range(3))
    flops = 4 * batch * seqlen * seqlen * nheads * head_dim / (2 if causal else 1)
    if bwd:
        flops *= 3.5
    qt, kt, vt = (t.detach().transpose(1, 2).requires_grad_(bwd) for t in (q, k, v))
    dout = torch.randn_like(q)
    dout_t = dout.transpose(1, 2)

    def ours(backend: str) -> Callable[[], None]:
        def run() -> None:
            out = fa_kernels.flash_attn_func(q, k, v, causal=causal, backend=backend)
            if bwd:
                torch.autograd.grad(out, (q, k, v), dout)
        return run

    def sdpa(backend: SDPBackend):
        def run() -> None:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                if bwd:
                    torch.autograd.grad(out, (qt, kt, vt), dout_t)
        return run

    result: dict[str, float | None] = {"ours": tflops(flops, bench_ms(ours("triton")))}
    if CUDA:
        result["cuda"] = tflops(flops, bench_ms(ours("cuda")))
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            result[name] = tflops(flops, bench_ms(sdpa(backend)))
        except RuntimeError:
            result[name] = None
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seqlens", type=int, nargs="*", default=SEQLENS)
    parser.add_argument("--head-dims", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--no-first-call", action="store_true")
    args = parser.parse_args()
    rows = []
    for head_dim, causal, seqlen in itertools.product(args.head_dims, (False, True), args.seqlens):
        fwd = case(head_dim, causal, seqlen, bwd=False)
        both = case(head_dim, causal, seqlen, bwd=True)
        row = {"hd": head_dim, "causal": causal, "seqlen": seqlen,
               "fwd": fwd["ours"], "fwd/flash": _ratio(fwd["ours"], fwd["flash"]),
               "fwd/cudnn": _ratio(fwd["ours"], fwd["cudnn"]), "sdpa_flash_fwd": fwd["flash"],
               "sdpa_cudnn_fwd": fwd["cudnn"],
               "fwd+bwd": both["ours"], "fb/flash": _ratio(both["ours"], both["flash"]),
               "fb/cudnn": _ratio(both["ours"], both["cudnn"]), "sdpa_flash_fb": both["flash"],
               "sdpa_cudnn_fb": both["cudnn"]}
        if CUDA:  # the CUDA C++ backend beside the Triton one
            row |= {"cuda fwd": fwd["cuda"], "cuda fwd/flash": _ratio(fwd["cuda"], fwd["flash"]),
                    "cuda fwd+bwd": both["cuda"], "cuda fb/flash": _ratio(both["cuda"], both["flash"])}
        rows.append(row)
        print(row, flush=True)
    meta = header()
    text = (f"# Attention bf16, TFLOP/s ({meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, "
            f"{meta['date']})\n\n`fwd`, `fwd+bwd`: the Triton backend; `cuda ...`: the CUDA C++ backend; "
            "`x/flash`, `x/cudnn`: ratio to SDPA's flash / cuDNN backend in the same run.\n\n"
            + table(rows, list(rows[0])))
    if not args.no_first_call:
        snippet = ("q = torch.randn(2, 1024, 16, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
                   "def run():\n    o = fa_kernels.flash_attn_func(q, q, q, causal=True, backend='triton')\n"
                   "    o.sum().backward()")
        cold, warm = first_call_seconds(snippet)
        meta["first_call_s"] = {"cold_cache": cold, "warm_cache": warm}
        text += (f"\n\nFirst call (fwd+bwd, hd128 causal, includes Triton JIT): {cold:.2f} s with an empty "
                 f"Triton cache, {warm:.2f} s in a new process with the cache warm.")
    print(text)
    save("attention", meta, rows, text)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


if __name__ == "__main__":
    main()
