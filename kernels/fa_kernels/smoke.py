"""Smoke test of the installed kernels on this machine: ``python -m fa_kernels.smoke [--json] [--quick]``.

Attention forward and backward (causal and not, GQA, an odd seqlen, head dims 64 and 128) and
DropoutAddRMSNorm forward and backward (p=0 against the reference; p>0 through the returned mask), the
mixed-precision norm call (float32 weight, bfloat16 activations), for
every backend that can run here, against fa_kernels.reference. Without a GPU the Triton kernels run
under the CPU interpreter at tiny sizes. Exit status 1 when any case fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time torch is imported after TRITON_INTERPRET is chosen (see _device)
    import torch

GPU_HINT = "cpu (Triton CPU interpreter, tiny sizes)"


@dataclass
class Case:
    op: str
    backend: str
    shape: str
    dtype: str
    max_err: float
    tolerance: float
    speed: str
    passed: bool
    error: str = ""


def _setup_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before fa_kernels' kernels are decorated
    return "cpu"


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double(), ref.detach().double()
    if not bool(out.isfinite().all()):
        return float("inf")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def _seconds_per_call(fn: Callable[[], object], device: str, reps: int = 5) -> float:
    """Wall time of one call once compiled (the first call, JIT included, has already run)."""
    import torch

    if device != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def attention_cases(backend: str, device: str, quick: bool) -> list[Case]:
    import torch

    import fa_kernels
    from fa_kernels import reference

    dtype = torch.bfloat16 if device == "cuda" else torch.float16  # interpreter: fp16 dots only
    tol = 1.2e-2 if dtype == torch.bfloat16 else 2e-3
    shapes = ([(2, 1024, 1024, 8, 2, 128, True), (1, 777, 1031, 8, 8, 64, False)] if device == "cuda"
              else [(1, 37, 45, 4, 2, 64, True), (1, 33, 33, 2, 2, 128, False)])
    if quick:
        shapes = shapes[:1] + [(s[0], s[1], s[2], s[3], s[4], 64 if s[5] == 128 else 128, not s[6])
                               for s in shapes[:1]]
    cases = []
    for b, sq, sk, h, hk, d, causal in shapes:
        name = f"b{b} sq{sq} sk{sk} h{h}/{hk} d{d}{' causal' if causal else ''}"
        try:
            q = torch.randn(b, sq, h, d, device=device, dtype=dtype, requires_grad=True)
            k = torch.randn(b, sk, hk, d, device=device, dtype=dtype, requires_grad=True)
            v = torch.randn(b, sk, hk, d, device=device, dtype=dtype, requires_grad=True)
            def fwd() -> torch.Tensor:
                return fa_kernels.flash_attn_func(q, k, v, causal=causal, backend=backend)  # type: ignore[no-any-return]

            out = fwd()
            dout = torch.randn_like(out)
            grads = torch.autograd.grad(out, (q, k, v), dout)
            wide = [t.detach().double() if device == "cpu" else t.detach().float() for t in (q, k, v)]
            wide = [t.requires_grad_() for t in wide]
            ref, _ = reference.attention(*wide, causal=causal)
            ref_grads = torch.autograd.grad(ref, wide, dout.to(ref.dtype))
            errs = [_rel(out, ref)] + [_rel(g, r) for g, r in zip(grads, ref_grads, strict=True)]
            flops = 4 * b * sq * sk * h * d / (2 if causal else 1)
            with torch.no_grad():
                secs = _seconds_per_call(fwd, device)
            speed = f"fwd {flops / secs / 1e12:.0f} TFLOP/s" if device == "cuda" else "-"
            cases.append(Case("attention fwd+bwd", backend, name, str(dtype).replace("torch.", ""),
                              max(errs), 2 * tol, speed, max(errs) < 2 * tol))
        except Exception as exc:
            cases.append(Case("attention fwd+bwd", backend, name, str(dtype), float("nan"), 2 * tol, "-",
                              False, f"{type(exc).__name__}: {exc}"[:300]))
    return cases


def norm_cases(backend: str, device: str, quick: bool) -> list[Case]:
    import torch

    import fa_kernels
    from fa_kernels import reference

    m, n = (4096, 4096) if device == "cuda" else (16, 256)
    dtype = torch.bfloat16
    cases = []
    for p in (0.0, 0.1):
        name = f"{m}x{n} p={p} prenorm"
        try:
            x = torch.randn(m, n, device=device, dtype=dtype, requires_grad=True)
            res = torch.randn(m, n, device=device, dtype=dtype, requires_grad=True)
            w = torch.rand(n, device=device, dtype=dtype, requires_grad=True)
            def fwd(p: float = p) -> tuple[torch.Tensor, ...]:
                return fa_kernels.rms_norm_fn(  # type: ignore[no-any-return]
                    x, w, None, residual=res, dropout_p=p, prenorm=True, return_dropout_mask=True,
                    backend=backend)

            y, s, keep, _ = fwd()
            dy, ds = torch.randn_like(y), torch.randn_like(s)
            grads = torch.autograd.grad((y, s), (x, res, w), (dy, ds))
            wide = [t.detach().float().requires_grad_() for t in (x, res, w)]
            ry, rs = reference.rms_norm(wide[0], wide[2], None, residual=wide[1], eps=1e-6,
                                        dropout_mask=keep, dropout_p=p)
            ref_grads = torch.autograd.grad((ry, rs), wide, (dy.float(), ds.float()))
            errs = [_rel(y, ry), _rel(s, rs)] + [_rel(g, r) for g, r in zip(grads, ref_grads, strict=True)]
            with torch.no_grad():
                secs = _seconds_per_call(fwd, device)
            speed = f"fwd {4 * m * n * 2 / secs / 1e9:.0f} GB/s" if device == "cuda" else "-"
            cases.append(Case("DropoutAddRMSNorm fwd+bwd", backend, name, "bfloat16", max(errs), 2.4e-2,
                              speed, max(errs) < 2.4e-2))
        except Exception as exc:
            cases.append(Case("DropoutAddRMSNorm fwd+bwd", backend, name, "bfloat16", float("nan"), 2.4e-2,
                              "-", False, f"{type(exc).__name__}: {exc}"[:300]))
        if quick:
            break
    return cases


def mixed_precision_case(backend: str, device: str) -> Case:
    """What mixed-precision training calls (issue #10): float32 weight, bfloat16 activations and
    residual, residual kept in float32; forward and backward against the reference. Runs in --quick too,
    so an install whose compiled backend mishandles it fails its smoke test and is rolled back."""
    import torch

    import fa_kernels
    from fa_kernels import reference

    m, n = (512, 4096) if device == "cuda" else (16, 256)
    name, tol = f"{m}x{n} w fp32, x bf16, residual_in_fp32", 2.4e-2
    try:
        x = torch.randn(m, n, device=device, dtype=torch.bfloat16, requires_grad=True)
        res = torch.randn(m, n, device=device, dtype=torch.bfloat16, requires_grad=True)
        w = torch.rand(n, device=device, dtype=torch.float32, requires_grad=True)
        y, s = fa_kernels.rms_norm_fn(x, w, None, residual=res, prenorm=True, residual_in_fp32=True,
                                      backend=backend)
        dy, ds = torch.randn_like(y), torch.randn_like(s)
        grads = torch.autograd.grad((y, s), (x, res, w), (dy, ds))
        wide = [t.detach().float().requires_grad_() for t in (x, res, w)]
        ry, rs = reference.rms_norm(wide[0], wide[2], None, residual=wide[1], eps=1e-6)
        ref_grads = torch.autograd.grad((ry, rs), wide, (dy.float(), ds.float()))
        errs = [_rel(y, ry), _rel(s, rs)] + [_rel(g, r) for g, r in zip(grads, ref_grads, strict=True)]
        dtypes_ok = [t.dtype for t in (y, *grads)] == [x.dtype, x.dtype, res.dtype, w.dtype]
        passed = max(errs) < tol and dtypes_ok
        return Case("RMSNorm mixed precision", backend, name, "bf16+fp32", max(errs), tol, "-", passed,
                    "" if dtypes_ok else "a gradient came back in the wrong dtype")
    except Exception as exc:
        return Case("RMSNorm mixed precision", backend, name, "bf16+fp32", float("nan"), tol, "-", False,
                    f"{type(exc).__name__}: {exc}"[:300])


def _progress(cases: list[Case]) -> list[Case]:
    """One stderr line per finished case (fa-dist shows them while the test runs)."""
    for c in cases:
        print(f"smoke: {'pass' if c.passed else 'FAIL'} {c.op} {c.backend} {c.shape}", file=sys.stderr,
              flush=True)
    return cases


def run(quick: bool) -> dict[str, object]:
    device = _setup_device()
    import torch

    import fa_kernels
    from fa_kernels import backend as backends

    torch.manual_seed(0)
    cases: list[Case] = []
    norm_backends: list[str] = [b for b in ("cuda", "triton") if b in backends.available()]
    if device == "cpu":
        norm_backends = ["triton"]
    for name in norm_backends:
        cases += _progress(norm_cases(name, device, quick))
        cases += _progress([mixed_precision_case(name, device)])
    from fa_kernels.cuda import attention as cuda_attention

    attention_backends = ["cuda"] if device == "cuda" and cuda_attention.compiled() else []
    for name in [*attention_backends, "triton"]:
        cases += _progress(attention_cases(name, device, quick))
    return {"device": torch.cuda.get_device_name() if device == "cuda" else GPU_HINT,
            "fa_kernels": fa_kernels.__version__, "torch": torch.__version__,
            "backends": backends.available(), "passed": all(c.passed for c in cases),
            "cases": [asdict(c) for c in cases]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fa_kernels.smoke", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer cases (what fa-dist install runs)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fa_kernels {result['fa_kernels']} on {result['device']}")
        for case in result["cases"]:  # type: ignore[attr-defined]
            mark = "PASS" if case["passed"] else "FAIL"
            print(f"{mark} {case['op']:<26} {case['backend']:<7} {case['shape']:<32} err {case['max_err']:.2e} "
                  f"(tol {case['tolerance']:.0e}) {case['speed']} {case['error']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
