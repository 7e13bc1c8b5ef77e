"""Output allocation. With FA_KERNELS_POISON=1 every output starts as NaN (or -1 for integers), so a
test sees any element a kernel forgot to write."""

from __future__ import annotations

import os

import torch


def poisoning() -> bool:
    return os.environ.get("FA_KERNELS_POISON", "0") == "1"


def empty(shape: tuple[int, ...] | torch.Size, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if not poisoning():
        return torch.empty(shape, dtype=dtype, device=device)
    fill = float("nan") if dtype.is_floating_point else -1
    return torch.full(shape, fill, dtype=dtype, device=device)


def empty_like(t: torch.Tensor) -> torch.Tensor:
    return empty(t.shape, dtype=t.dtype, device=t.device)
