"""One forward and one backward of the CUDA attention backend (bf16, hd128, 4 x 4096 x 16 heads), for
Nsight Compute: ncu --section SpeedOfLight --section Occupancy --section WarpStateStats \
    -k regex:flash python benchmarks/profile_cuda_attention.py"""

from __future__ import annotations

import sys

import torch

import fa_kernels


def main() -> None:
    causal = "--causal" in sys.argv
    q, k, v = (torch.randn(4, 4096, 16, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    out = fa_kernels.flash_attn_func(q, k, v, causal=causal, backend="cuda")
    torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
