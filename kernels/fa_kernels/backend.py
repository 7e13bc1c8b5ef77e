"""Which implementation runs a call: "triton", "cuda" (compiled extension), "reference" (plain PyTorch).

"auto" (the default) takes, on a GPU, the faster of triton and cuda for the op, direction and shape class
from the measured table (fa_kernels/auto.py, auto_table.py; ``explain()`` says what it picks and why),
and the Triton CPU interpreter or plain PyTorch elsewhere. The default can be set with ``set_backend()``
or the FA_KERNELS_BACKEND environment variable; every public op also takes ``backend=`` for one call.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import torch

from fa_kernels import auto, reference
from fa_kernels._extension import cuda_extension
from fa_kernels.calls import AttnProblem

BACKENDS = ("auto", "triton", "cuda", "reference")
_default = os.environ.get("FA_KERNELS_BACKEND", "auto")


def set_backend(name: str) -> None:
    global _default
    _default = _validate(name)


def get_backend() -> str:
    return _default


def _validate(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def triton_runs_on(device: torch.device) -> bool:
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> list[str]:
    """Backends usable in this process, best first."""
    found = []
    if cuda_extension() is not None:
        found.append("cuda")
    try:
        import triton  # noqa: F401

        found.append("triton")
    except ImportError:
        pass
    found.append("reference")
    return found


# ops the compiled extension implements
CUDA_OPS = frozenset({"norm", "attention"})


@functools.lru_cache(maxsize=16)
def device_arch(index: int) -> str:
    return auto.arch_name(torch.cuda.get_device_capability(index))


def _built(op: str) -> bool:
    """The compiled extension has ``op``'s kernels (a ROCm build has only the norm)."""
    if cuda_extension() is None:
        return False
    if op == "attention":
        from fa_kernels.cuda import attention as cuda_attention

        return cuda_attention.compiled()
    return True


def explain(op: str, direction: str, shape: auto.Shape, device: torch.device | str) -> tuple[str, str]:
    """(backend, reason): what backend="auto" runs for ``op`` ("norm", "attention") in ``direction``
    ("forward", "backward") on a call of ``shape`` (auto.NormShape / auto.AttnShape) on ``device``."""
    device = torch.device(device)
    auto.key(op, direction, shape)  # refuses an unknown op, direction or shape type
    if device.type != "cuda":
        if triton_runs_on(device) and "triton" in available():
            return "triton", f"tensors on {device}: the Triton CPU interpreter (TRITON_INTERPRET=1)"
        return "reference", f"tensors on {device}: plain PyTorch"
    index = device.index if device.index is not None else torch.cuda.current_device()
    chosen, why = auto.choose(op, direction, shape, device_arch(index))
    if chosen == "cuda" and not _built(op):
        return ("triton", f"{why}; the cuda backend is not in this build") if "triton" in available() else (
            "reference", f"{why}; neither the cuda backend nor triton is here")
    if chosen == "triton" and "triton" not in available():
        return ("cuda", f"{why}; triton is not installed") if _built(op) else (
            "reference", f"{why}; triton is not installed")
    return chosen, why


def resolve(name: str | None, device: torch.device, op: str = "attention", *, shape: auto.Shape | None = None,
            direction: str = "forward") -> str:
    """The backend that runs a call: ``name`` (or the default) when it is not "auto"; for "auto" the
    measured table's choice when ``shape`` is given, else triton (or plain PyTorch without it)."""
    name = _validate(name or _default)
    if name == "cuda" and op not in CUDA_OPS:
        raise NotImplementedError(f"the cuda backend has no {op} kernel yet; use backend='triton' or 'auto'")
    if name != "auto":
        if name == "triton" and not triton_runs_on(device):
            raise RuntimeError(f"the triton backend needs a GPU tensor (got {device}) or TRITON_INTERPRET=1")
        if name == "cuda" and cuda_extension() is None:
            raise RuntimeError("the cuda backend is not in this build of fa_kernels (install a compiled wheel "
                               "with `fa-dist install`)")
        return name
    if device.type == "cuda" and shape is not None:
        return explain(op, direction, shape, device)[0]
    if triton_runs_on(device) and "triton" in available():
        return "triton"
    return "reference"


# -- attention ---------------------------------------------------------------------------------


AttnImpl = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def cuda_cannot(why: str) -> NotImplementedError:
    """backend="cuda" was asked for by name and its kernels cannot run this call: the error names the
    argument that rules them out. (Only "auto" switches backends: a named request is never silently
    served by another backend.)"""
    return NotImplementedError(f"the cuda backend has no attention kernel for {why}; use backend='triton' "
                               "or backend='auto'")


def attention_impl(name: str | None, device: torch.device, call: AttnProblem, *, alibi: bool = False,
                   sink: bool = False, needs_grad: bool = False) -> AttnImpl:
    """The attention Function for this call. For "auto" on a GPU the measured table decides; a call
    that needs gradients takes its backward choice for both directions (attention does not mix
    backends, auto.py), and a table pick of cuda the CUDA kernels cannot run goes to Triton."""
    chosen = resolve(name, device)
    from_table = False
    if chosen == "triton" and (name or _default) == "auto" and device.type == "cuda":
        shape = auto.AttnShape(call.max_seqlen_k, call.head_dim, call.causal)
        chosen = explain("attention", "backward" if needs_grad else "forward", shape, device)[0]
        from_table = True
    if chosen == "cuda":
        from fa_kernels.cuda import attention as cuda_attention

        why = "alibi_slopes" if alibi else "s_aux" if sink else cuda_attention.unsupported(call, device)
        if why is None:
            return cuda_attention.CudaFlashAttnFunction.apply
        if not from_table:  # asked for by name: say why not
            raise cuda_cannot(why)
        chosen = "triton"
    if chosen == "triton":
        from fa_kernels.triton.attention import FlashAttnFunction

        return FlashAttnFunction.apply
    return _reference_attention


def dropout_keep_mask(call: AttnProblem, seed: int, device: torch.device) -> torch.Tensor:
    if triton_runs_on(device):
        from fa_kernels.triton.attention import dropout_keep_mask as keep

        return keep(call, seed, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (call.batch, call.nheads, call.max_seqlen_q, call.max_seqlen_k)
    return torch.rand(shape, generator=gen, device=device) >= call.dropout_p


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor | None,
                         cu_k: torch.Tensor | None, alibi: torch.Tensor | None, call: AttnProblem, seed: int,
                         s_aux: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if cu_q is None or cu_k is None:  # varlen calls pass both
        return _reference_fixed(q, k, v, alibi, call, seed, s_aux)
    outs, lses = [], []
    for b in range(call.batch):
        q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        slopes = alibi[b] if alibi is not None and alibi.dim() == 2 else alibi
        one = dataclasses.replace(call, batch=1, max_seqlen_q=q1 - q0, max_seqlen_k=k1 - k0, varlen=False)
        out, lse = _reference_fixed(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], slopes, one, seed + b,
                                    s_aux)
        outs.append(out[0])
        lses.append(lse[0])
    return torch.cat(outs), torch.cat(lses, dim=-1)


def _reference_fixed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alibi: torch.Tensor | None,
                     call: AttnProblem, seed: int,
                     s_aux: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    mask = dropout_keep_mask(call, seed, q.device) if call.dropout_p > 0 else None
    out, lse = reference.attention(q, k, v, softmax_scale=call.softmax_scale, causal=call.causal,
                                   window_size=call.window, softcap=call.softcap, alibi_slopes=alibi,
                                   dropout_mask=mask, dropout_p=call.dropout_p, s_aux=s_aux)
    return out.to(q.dtype), lse.detach()
