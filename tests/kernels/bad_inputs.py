"""Deliberately bad calls, each of which must raise a Python exception naming the argument (issue #10).

Used in process by the CPU tests and through ``run_isolated`` by the GPU tests: there each call runs in
a child process, so a call that kills its process with a signal is reported as that case's failure
instead of taking pytest down. As a script: ``python tests/kernels/bad_inputs.py DEVICE BACKEND CASE...``
prints one JSON line per case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before fa_kernels decorates its kernels
    import shutil

    if shutil.which("nvidia-smi") is None:
        os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

import fa_kernels


@dataclass(frozen=True)
class Ctx:
    device: str
    backend: str

    def t(self, *shape: int, dtype: torch.dtype = torch.float16, device: str | None = None) -> torch.Tensor:
        return torch.randn(shape, dtype=dtype, device=device or self.device)

    @property
    def other_device(self) -> str:
        """A device other than self.device: another GPU if there is one, else the CPU."""
        return "cuda:1" if self.device.startswith("cuda") and torch.cuda.device_count() > 1 else "cpu"


@dataclass(frozen=True)
class Case:
    fn: Callable[[Ctx], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str  # the argument the message must name
    needs: str = "any"  # "any", "gpu" (a CUDA device), "ops" (the compiled extension's torch.ops)


def _norm(c: Ctx, x: torch.Tensor, w: Any, **kw: Any) -> Any:
    return fa_kernels.rms_norm_fn(x, w, None, backend=c.backend, **kw)


def _attn(c: Ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: Any) -> Any:
    return fa_kernels.flash_attn_func(q, k, v, backend=c.backend, **kw)


def _varlen(c: Ctx, cu_q: Any, cu_k: Any, max_q: int = 8, max_k: int = 8, total: int = 8) -> Any:
    q, k, v = c.t(total, 2, 64), c.t(total, 2, 64), c.t(total, 2, 64)
    return fa_kernels.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, backend=c.backend)


def _cu(c: Ctx, *offsets: int, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    return torch.tensor(offsets, dtype=dtype, device=c.device)


NORM_CASES: dict[str, Case] = {
    "norm x int": Case(lambda c: _norm(c, torch.ones(4, 64, dtype=torch.int32, device=c.device),
                                       c.t(64)), TypeError, "x must be float32"),
    "norm weight float64": Case(lambda c: _norm(c, c.t(4, 64), c.t(64, dtype=torch.float64)), TypeError,
                                "weight must be float32"),
    "norm weight not a tensor": Case(lambda c: _norm(c, c.t(4, 64), [1.0] * 64), TypeError,
                                     "weight must be a torch.Tensor"),
    "norm weight wrong size": Case(lambda c: _norm(c, c.t(4, 64), c.t(65)), ValueError, "weight must be"),
    "norm residual wrong shape": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), residual=c.t(4, 32)),
                                      ValueError, "residual must have x's shape"),
    "norm residual int": Case(lambda c: _norm(c, c.t(4, 64), c.t(64),
                                              residual=torch.ones(4, 64, dtype=torch.int64, device=c.device)),
                              TypeError, "residual must be float32"),
    "norm scalar x": Case(lambda c: _norm(c, c.t(), c.t(1)), ValueError, "x must have at least one"),
    "norm hidden 0": Case(lambda c: _norm(c, c.t(4, 0), c.t(0)), ValueError, "hidden size 0"),
    "norm hidden too large": Case(lambda c: _norm(c, c.t(1, 40000), c.t(40000)), NotImplementedError,
                                  "hidden size 40000"),
    "norm dropout 1": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), dropout_p=1.0), ValueError, "dropout_p"),
    "norm x1": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), x1=c.t(4, 64)), NotImplementedError, "x1"),
    "norm out_dtype int": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), out_dtype=torch.int64), TypeError,
                               "out_dtype"),
    "norm residual_out dtype": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), residual=c.t(4, 64),
                                                    residual_out=c.t(4, 64, dtype=torch.float32)),
                                    TypeError, "residual_out must be"),
    "norm rowscale shape": Case(lambda c: _norm(c, c.t(4, 64), c.t(64), rowscale=c.t(5)), ValueError,
                                "rowscale must be"),
    "norm module wrong hidden": Case(lambda c: fa_kernels.DropoutAddRMSNorm(64, device=c.device)(c.t(4, 32)),
                                     ValueError, "weight must be"),
    "norm weight on another device": Case(lambda c: _norm(c, c.t(4, 64), c.t(64, device=c.other_device)),
                                          ValueError, "weight is on", needs="gpu"),
    "norm cuda backend cpu tensors": Case(lambda c: fa_kernels.rms_norm_fn(c.t(4, 64, device="cpu"),
                                                                           c.t(64, device="cpu"), None,
                                                                           backend="cuda"),
                                          ValueError, "backend='cuda' needs CUDA tensors"),
}

ATTN_CASES: dict[str, Case] = {
    "attn q float32": Case(lambda c: _attn(c, *(c.t(1, 8, 2, 64, dtype=torch.float32) for _ in range(3))),
                           TypeError, "float16 or bfloat16"),
    "attn k dtype differs": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64, dtype=torch.bfloat16),
                                                 c.t(1, 8, 2, 64)), TypeError, "share a dtype"),
    "attn q rank 3": Case(lambda c: _attn(c, c.t(8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64)), ValueError,
                          "q must be"),
    "attn head_dim 36": Case(lambda c: _attn(c, c.t(1, 8, 2, 36), c.t(1, 8, 2, 36), c.t(1, 8, 2, 36)),
                             NotImplementedError, "head_dim=36"),
    "attn head_dim 512": Case(lambda c: _attn(c, c.t(1, 8, 2, 512), c.t(1, 8, 2, 512), c.t(1, 8, 2, 512)),
                              NotImplementedError, "head_dim=512"),
    "attn head_dim 0": Case(lambda c: _attn(c, c.t(1, 8, 2, 0), c.t(1, 8, 2, 0), c.t(1, 8, 2, 0)),
                            NotImplementedError, "head_dim=0"),
    "attn heads not divisible": Case(lambda c: _attn(c, c.t(1, 8, 3, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64)),
                                     ValueError, "nheads"),
    "attn zero kv heads": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 0, 64), c.t(1, 8, 0, 64)),
                               ValueError, "nheads_k"),
    "attn batch differs": Case(lambda c: _attn(c, c.t(2, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64)),
                               ValueError, "batch"),
    "attn k v seqlen differ": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 9, 2, 64)),
                                   ValueError, "same batch and seqlen"),
    "attn dropout 1.5": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64),
                                             dropout_p=1.5), ValueError, "dropout_p"),
    "attn window -2": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64),
                                           window_size=(-2, 0)), ValueError, "window_size"),
    "attn softcap negative": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64),
                                                  softcap=-1.0), ValueError, "softcap"),
    "attn alibi float16": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64),
                                               alibi_slopes=c.t(2)), TypeError, "alibi_slopes"),
    "attn bad backend name": Case(lambda c: fa_kernels.flash_attn_func(c.t(1, 8, 2, 64), c.t(1, 8, 2, 64),
                                                                       c.t(1, 8, 2, 64), backend="fast"),
                                  ValueError, "backend='fast'"),
    "attn qkvpacked shape": Case(lambda c: fa_kernels.flash_attn_qkvpacked_func(c.t(1, 8, 2, 2, 64),
                                                                                backend=c.backend),
                                 ValueError, "qkv must be"),
    "attn kvpacked shape": Case(lambda c: fa_kernels.flash_attn_kvpacked_func(c.t(1, 8, 2, 64),
                                                                              c.t(1, 8, 3, 2, 64),
                                                                              backend=c.backend),
                                ValueError, "kv must be"),
    "attn k on another device": Case(lambda c: _attn(c, c.t(1, 8, 2, 64), c.t(1, 8, 2, 64, device=c.other_device),
                                                     c.t(1, 8, 2, 64)), ValueError, "k is on", needs="gpu"),
    "attn cuda backend cpu tensors": Case(lambda c: fa_kernels.flash_attn_func(
        *(c.t(1, 8, 2, 64, device="cpu") for _ in range(3)), backend="cuda"), ValueError,
        "backend='cuda' needs CUDA tensors"),
    "varlen cu_seqlens int64": Case(lambda c: _varlen(c, _cu(c, 0, 8, dtype=torch.int64), _cu(c, 0, 8)),
                                    TypeError, "cu_seqlens_q must be a 1-D int32"),
    "varlen cu_seqlens list": Case(lambda c: _varlen(c, [0, 8], _cu(c, 0, 8)), TypeError, "cu_seqlens_q"),
    "varlen cu_seqlens decreasing": Case(lambda c: _varlen(c, _cu(c, 0, 6, 4, 8), _cu(c, 0, 2, 4, 8)),
                                         ValueError, "cu_seqlens_q must be non-decreasing"),
    "varlen cu_seqlens not from 0": Case(lambda c: _varlen(c, _cu(c, 1, 8), _cu(c, 0, 8)), ValueError,
                                         "cu_seqlens_q must start at 0"),
    "varlen cu_seqlens lengths differ": Case(lambda c: _varlen(c, _cu(c, 0, 4, 8), _cu(c, 0, 8)), ValueError,
                                             "same number of sequences"),
    "varlen cu_seqlens total wrong": Case(lambda c: _varlen(c, _cu(c, 0, 4, 6), _cu(c, 0, 4, 8)), ValueError,
                                          "cu_seqlens_q ends at 6"),
    "varlen max_seqlen too small": Case(lambda c: _varlen(c, _cu(c, 0, 2, 8), _cu(c, 0, 4, 8), max_q=4),
                                        ValueError, "max_seqlen_q=4"),
    "varlen block_table, k/v not paged": Case(lambda c: fa_kernels.flash_attn_varlen_func(
        c.t(8, 2, 64), c.t(8, 2, 64), c.t(8, 2, 64), _cu(c, 0, 8), _cu(c, 0, 8), 8, 8,
        block_table=_cu(c, 0), backend=c.backend), ValueError, "k must be 4-D"),
}


def _ops() -> Any:
    import fa_kernels._C  # noqa: F401  (registers torch.ops.fa_kernels)

    return torch.ops.fa_kernels


def _fwd(c: Ctx, x: torch.Tensor, w: Any = None, res: Any = None, *, eps: float = 1e-6, p: float = 0.0,
         rdtype: Any = None, odtype: Any = None, keep: bool = False) -> Any:
    return _ops().rms_norm_fwd(x, res, w, eps, p, 0, rdtype or x.dtype, odtype or x.dtype, True, keep)


def _bwd(c: Ctx, s: torch.Tensor, rstd: torch.Tensor, *, dy: Any = None, w: Any = None, dres: Any = None,
         x_dtype: Any = None) -> Any:
    dy = dy if dy is not None else torch.randn_like(s)
    return _ops().rms_norm_bwd(dy, s, rstd, w, dres, 0.0, 0, x_dtype or s.dtype, False)


def _rstd(c: Ctx, rows: int) -> torch.Tensor:
    return torch.ones(rows, device=c.device)


def _flash(c: Ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
    return _ops().flash_fwd(q, k, v, 0.125, False)


B16 = torch.bfloat16
# A type error leaves the stable-ABI glue as std::invalid_argument tagged "fa_kernels TypeError: ": a direct
# torch.ops call raises it as ValueError (torch maps no C++ exception to TypeError); the public API raises
# TypeError (fa_kernels/cuda/_errors.py).
OP_TYPE_ERROR = ValueError
OPS_CASES: dict[str, Case] = {
    "op fwd x 1-D": Case(lambda c: _fwd(c, c.t(64, dtype=B16)), ValueError, "x must be 2-D"),
    "op fwd x float64": Case(lambda c: _fwd(c, c.t(4, 64, dtype=torch.float64)), OP_TYPE_ERROR,
                             "x must be float32"),
    "op fwd weight wrong size": Case(lambda c: _fwd(c, c.t(512, 4096, dtype=B16), c.t(4095, dtype=B16)),
                                     ValueError, "weight must be a contiguous [4096]"),
    "op fwd weight float16 for bf16 x": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), c.t(64)), OP_TYPE_ERROR,
                                             "weight must be float32 or x's dtype"),
    "op fwd residual dtype": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), None, c.t(4, 64, dtype=B16),
                                                 rdtype=torch.float32), OP_TYPE_ERROR, "residual must be residual_dtype"),
    "op fwd residual shape": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), None, c.t(4, 32, dtype=B16)),
                                  ValueError, "residual must be [4, 64]"),
    "op fwd residual_dtype float16": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), rdtype=torch.float16),
                                          OP_TYPE_ERROR, "residual_dtype must be"),
    "op fwd out_dtype int": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), odtype=torch.int32), OP_TYPE_ERROR,
                                 "out_dtype"),
    "op fwd hidden too large": Case(lambda c: _fwd(c, c.t(1, 40000, dtype=B16)), ValueError,
                                    "hidden size 40000"),
    "op fwd eps negative": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), eps=-1.0), ValueError, "eps"),
    "op fwd dropout 1": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), p=1.0), ValueError, "dropout_p"),
    "op fwd keep without dropout": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), keep=True), ValueError,
                                        "store_keep"),
    "op fwd weight on cpu": Case(lambda c: _fwd(c, c.t(4, 64, dtype=B16), c.t(64, dtype=B16, device="cpu")),
                                 ValueError, "weight must be a CUDA tensor"),
    "op bwd rstd shape": Case(lambda c: _bwd(c, c.t(4, 64, dtype=B16), _rstd(c, 3)), ValueError,
                              "rstd must be a contiguous float32 [4]"),
    "op bwd s 1-D": Case(lambda c: _bwd(c, c.t(64, dtype=B16), _rstd(c, 1)), ValueError, "s must be 2-D"),
    "op bwd dy shape": Case(lambda c: _bwd(c, c.t(4, 64, dtype=B16), _rstd(c, 4), dy=c.t(4, 63, dtype=B16)),
                            ValueError, "dy must be [4, 64]"),
    "op bwd dresidual_out dtype": Case(lambda c: _bwd(c, c.t(4, 64, dtype=B16), _rstd(c, 4),
                                                      dres=c.t(4, 64, dtype=torch.float32)), OP_TYPE_ERROR,
                                       "dresidual_out must have s's dtype"),
    "op bwd x_dtype int": Case(lambda c: _bwd(c, c.t(4, 64, dtype=B16), _rstd(c, 4), x_dtype=torch.int64),
                               OP_TYPE_ERROR, "x_dtype"),
    "op bwd weight size": Case(lambda c: _bwd(c, c.t(4, 64, dtype=B16), _rstd(c, 4), w=c.t(65, dtype=B16)),
                               ValueError, "weight must be a contiguous [64]"),
    "op flash q float32": Case(lambda c: _flash(c, *(c.t(1, 8, 2, 64, dtype=torch.float32) for _ in range(3))),
                               OP_TYPE_ERROR, "q must be float16 or bfloat16"),
    "op flash head_dim 96": Case(lambda c: _flash(c, *(c.t(1, 8, 2, 96) for _ in range(3))), ValueError,
                                 "head_dim 96"),
    "op flash q rank 3": Case(lambda c: _flash(c, c.t(8, 2, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64)),
                              ValueError, "q must be (batch"),
    "op flash k heads": Case(lambda c: _flash(c, c.t(1, 8, 3, 64), c.t(1, 8, 2, 64), c.t(1, 8, 2, 64)),
                             ValueError, "heads divisible"),
    "op flash misaligned k": Case(lambda c: _flash(c, c.t(1, 8, 2, 64), c.t(1 * 8 * 2 * 64 + 1)[1:].view(1, 8, 2, 64),
                                                   c.t(1, 8, 2, 64)), ValueError, "16-byte aligned"),
    "op flash bwd lse shape": Case(lambda c: _ops().flash_bwd(*(c.t(1, 8, 2, 64) for _ in range(5)),
                                                              torch.zeros(1, 8, 2, device=c.device), 0.125, False),
                                   ValueError, "lse must be"),
}

CASES: dict[str, Case] = {**NORM_CASES, **ATTN_CASES, **OPS_CASES}


def run_one(name: str, ctx: Ctx) -> dict[str, str]:
    case = CASES[name]
    try:
        case.fn(ctx)
    except Exception as exc:  # the point is to report whichever exception it was
        return {"case": name, "raised": type(exc).__name__, "message": str(exc)[:400]}
    return {"case": name, "raised": "", "message": "no exception"}


def verdict(name: str, result: dict[str, str]) -> str | None:
    """None when the case raised the expected exception naming the argument, else what went wrong."""
    case = CASES[name]
    errors = case.error if isinstance(case.error, tuple) else (case.error,)
    if result["raised"] not in {e.__name__ for e in errors}:
        return f"{name}: expected {'/'.join(e.__name__ for e in errors)}, got {result['raised'] or 'none'}: " \
               f"{result['message']}"
    if case.match not in result["message"]:
        return f"{name}: message does not name {case.match!r}: {result['message']}"
    return None


def run_isolated(names: list[str], device: str, backend: str, timeout: float = 300) -> dict[str, dict[str, str]]:
    """Every case in a child process: a child killed by a signal reports the case it was running as
    'signal N' and a fresh child carries on with the rest."""
    results: dict[str, dict[str, str]] = {}
    todo = list(names)
    script = str(Path(__file__).resolve())
    while todo:
        proc = subprocess.run([sys.executable, script, device, backend, *todo], capture_output=True, text=True,
                              timeout=timeout)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[row["case"]] = row
        started = [line[6:] for line in proc.stdout.splitlines() if line.startswith("START ")]
        crashed = next((n for n in started if n not in results), None)
        if crashed is None:
            missing = [n for n in todo if n not in results]
            for n in missing:
                results[n] = {"case": n, "raised": "", "message": f"child exited {proc.returncode}: "
                              f"{proc.stderr[-400:]}"}
            break
        results[crashed] = {"case": crashed, "raised": "",
                            "message": f"process died (exit {proc.returncode}, signal "
                                       f"{-proc.returncode if proc.returncode < 0 else 0}): {proc.stderr[-300:]}"}
        todo = [n for n in todo if n not in results]
    return results


def main(argv: list[str]) -> int:
    device, backend, names = argv[0], argv[1], argv[2:]
    ctx = Ctx(device=device, backend=backend)
    for name in names:
        print(f"START {name}", flush=True)
        print(json.dumps(run_one(name, ctx)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
