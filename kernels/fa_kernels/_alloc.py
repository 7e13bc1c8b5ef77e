"""Output allocation, and the norm's (rows, hidden) views. With FA_KERNELS_POISON=1 every output starts
as NaN (or -1 for integers), so a test sees any element a kernel forgot to write."""

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


def as_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` as (rows, n) with a contiguous last dim (a copy only where it is not). The norm Functions
    call it inside their forward, so autograd records no view between the caller's tensors and the
    Function: a gradient returned for two inputs then stays one tensor, and autograd gives each leaf
    its own copy (through a recorded view both leaves' .grad would share one storage)."""
    t = t.reshape(-1, n)
    return t if t.stride(-1) == 1 else t.contiguous()


def input_shaped(dx: torch.Tensor, dres: torch.Tensor | None,
                 shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor | None]:
    """dx and dresidual in the inputs' shape. Where they are one tensor (no dropout, no rowscale, same
    dtype: flash_attn returns one tensor for both too) they stay one Python object: autograd then sees
    two references to it and copies it for one leaf instead of letting two leaves' .grad share it."""
    shaped = dx.view(shape)
    if dres is dx:
        return shaped, shaped
    return shaped, dres.view(shape) if dres is not None else None
