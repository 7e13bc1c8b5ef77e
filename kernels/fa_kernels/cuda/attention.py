"""flash attention on the compiled CUDA kernels (csrc/attention): which calls they cover, autograd, and
fake implementations so the ops trace under torch.compile and FakeTensor."""

from __future__ import annotations

from typing import Any

import torch

from fa_kernels._extension import cuda_extension
from fa_kernels.calls import AttnProblem
from fa_kernels.cuda._errors import call as _call

HEAD_DIMS = (64, 128)


def compiled() -> bool:
    """The extension is built and has the attention ops (a ROCm build has only the norm)."""
    return cuda_extension() is not None and hasattr(torch.ops.fa_kernels, "flash_fwd")


def unsupported(call: AttnProblem, device: torch.device) -> str | None:
    """Why the CUDA kernels cannot run this call (the argument that rules them out), or None."""
    if not compiled():
        return "this build of fa_kernels has no CUDA attention kernels"
    if device.type != "cuda":
        return f"tensors on {device}"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "a GPU older than sm_80"
    if call.head_dim not in HEAD_DIMS:
        return f"head_dim={call.head_dim} (compiled: {', '.join(map(str, HEAD_DIMS))})"
    if call.varlen:
        return "varlen (cu_seqlens)"
    if call.window[0] >= 0 or (call.window[1] >= 0 and not call.causal):
        return "window_size"
    if call.softcap > 0:
        return "softcap"
    if call.dropout_p > 0:
        return "dropout_p > 0"
    return None


def _register_fakes() -> None:
    @torch.library.register_fake("fa_kernels::flash_fwd")  # type: ignore[untyped-decorator]
    def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float,
             causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
        batch, seqlen_q, heads, _ = q.shape
        return torch.empty_like(q), q.new_empty((batch, heads, seqlen_q), dtype=torch.float32)

    @torch.library.register_fake("fa_kernels::flash_bwd")  # type: ignore[untyped-decorator]
    def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
             lse: torch.Tensor, softmax_scale: float,
             causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


if compiled():
    _register_fakes()


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """The kernels move 16-byte rows: last dim contiguous, other strides and the offset into the
    storage multiples of 8 elements (storage_offset, unlike data_ptr, also works on fake tensors)."""
    ok = t.stride(-1) == 1 and all(s % 8 == 0 for s in t.stride()[:-1]) and t.storage_offset() % 8 == 0
    return t if ok else t.contiguous()


class CudaFlashAttnFunction(torch.autograd.Function):
    """Same calling convention as the Triton backend's FlashAttnFunction: -> (out, lse)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                cu_q: torch.Tensor | None, cu_k: torch.Tensor | None, alibi: torch.Tensor | None,
                call: AttnProblem, seed: int,
                s_aux: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = _aligned(q), _aligned(k), _aligned(v)
        out, lse = _call(torch.ops.fa_kernels.flash_fwd, q, k, v, call.softmax_scale, call.causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.call = call
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor,
                 _dlse: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _call(torch.ops.fa_kernels.flash_bwd, _aligned(dout), q, k, v, out, lse,
                           ctx.call.softmax_scale, ctx.call.causal)
        return dq, dk, dv, None, None, None, None, None, None
