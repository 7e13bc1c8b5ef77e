from __future__ import annotations

import torch

# ||out - ref|| / ||ref|| bounds by the dtype of the kernel's inputs and outputs (METHOD.md):
# fp32 far under 1e-3; fp16 ~ 1e-3; bf16 operands between 1e-3 and 1e-2.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64, ref64 = out.detach().double(), ref.detach().double()
    assert not torch.isnan(out64).any(), "NaN in output: an element was never written (poisoned) or the math broke"
    return ((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30)).item()


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str,
                 factor: float = 1.0) -> None:
    err = rel_err(out, ref)
    assert err < TOL[dtype] * factor, f"{what}: relative error {err:.2e} > {TOL[dtype] * factor:.1e}"


def keep_rate_ok(kept: int, total: int, p: float) -> bool:
    """Kept fraction within 5 standard deviations of 1 - p (false alarm < 1e-6)."""
    expected = total * (1 - p)
    sigma = (total * p * (1 - p)) ** 0.5
    return abs(kept - expected) <= 5 * sigma + 1
