"""Mixed precision in the fused norm, as flash_attn has it (issue #10): weight in float32 or x's dtype,
residual in x's dtype or float32, residual_in_fp32, out_dtype, torch.autocast; forward and backward
against the reference on every backend; each gradient in its own input's dtype.

The CPU run covers the Triton backend (interpreter, float16 activations) and the reference backend; the
GPU matrix covers every combination on auto, cuda, triton and reference.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

import fa_kernels
from fa_kernels import reference

from .helpers import TOL, assert_close

F32, F16, B16 = torch.float32, torch.float16, torch.bfloat16


def run_mixed(m: int, n: int, device: str, backend: str, *, x_dtype: torch.dtype, w_dtype: torch.dtype,
              res_dtype: torch.dtype | None, residual_in_fp32: bool, prenorm: bool, p: float,
              out_dtype: torch.dtype | None = None) -> None:
    x = torch.randn(m, n, dtype=x_dtype, device=device, requires_grad=True)
    w = (1 + 0.1 * torch.randn(n, device=device)).to(w_dtype).requires_grad_()
    res = torch.randn(m, n, dtype=res_dtype, device=device, requires_grad=True) if res_dtype else None
    outs = fa_kernels.rms_norm_fn(x, w, None, residual=res, dropout_p=p, prenorm=prenorm,
                                  residual_in_fp32=residual_in_fp32, return_dropout_mask=True,
                                  out_dtype=out_dtype, backend=backend)
    y, s, keep = (outs[0], outs[1], outs[2]) if prenorm else (outs[0], None, outs[1])
    expect_s = res_dtype or (F32 if residual_in_fp32 else x_dtype)
    assert y.dtype == (out_dtype or x_dtype)
    assert s is None or s.dtype == expect_s
    inputs = [t for t in (x, w, res) if t is not None]
    dy = torch.randn_like(y)
    ds = torch.randn_like(s) if s is not None else None
    grads = torch.autograd.grad([y] + ([s] if s is not None else []), inputs, [dy] + ([ds] if ds is not None else []))
    assert [g.dtype for g in grads] == [t.dtype for t in inputs]  # each gradient in its input's dtype
    wide = torch.float64 if device == "cpu" else F32
    ref_in = [t.detach().to(wide).requires_grad_() for t in inputs]
    ry, rs = reference.rms_norm(ref_in[0], ref_in[1], None, residual=ref_in[2] if res is not None else None,
                                eps=1e-6, dropout_mask=keep, dropout_p=p, upcast=False)
    ref_grads = torch.autograd.grad([ry] + ([rs] if s is not None else []), ref_in,
                                    [dy.to(wide)] + ([ds.to(wide)] if ds is not None else []))
    # the coarsest dtype a value passed through bounds its error
    coarse = _coarsest(x_dtype, out_dtype or x_dtype, *(t.dtype for t in inputs))
    assert_close(y, ry, coarse, "y")
    if s is not None:
        assert_close(s, rs, coarse, "residual_out")
    for name, got, want in zip(["dx", "dw", "dresidual"], grads, ref_grads, strict=False):
        assert_close(got, want, coarse, name, 2.0)


def _coarsest(*dtypes: torch.dtype) -> torch.dtype:
    return max(dtypes, key=lambda d: TOL[d])


# -- CPU (Triton interpreter: float16 activations) and the reference backend ----------------------

CPU_COMBOS = [
    # (w_dtype, res_dtype, residual_in_fp32, prenorm, p)
    (F32, F16, False, True, 0.0),  # the issue's snippet, in float16
    (F32, F16, True, True, 0.2),
    (F32, None, True, True, 0.0),
    (F32, F32, False, True, 0.2),
    (F16, F32, False, False, 0.0),
    (F32, None, False, False, 0.2),
]


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize(("w_dtype", "res_dtype", "residual_in_fp32", "prenorm", "p"), CPU_COMBOS)
def test_mixed_precision(w_dtype, res_dtype, residual_in_fp32, prenorm, p, backend, device):  # type: ignore[no-untyped-def]
    x_dtype = F16 if device == "cpu" else B16
    res_dtype = x_dtype if res_dtype == F16 else res_dtype
    run_mixed(9, 192, device, backend, x_dtype=x_dtype, w_dtype=w_dtype, res_dtype=res_dtype,
              residual_in_fp32=residual_in_fp32, prenorm=prenorm, p=p)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_out_dtype_float32_from_half_input(backend, device):  # type: ignore[no-untyped-def]
    run_mixed(5, 128, device, backend, x_dtype=F16, w_dtype=F32, res_dtype=F16, residual_in_fp32=False,
              prenorm=True, p=0.0, out_dtype=F32)


def _module_case(device: str, backend: str | None, x_dtype: torch.dtype, *, autocast: bool) -> list[torch.Tensor]:
    """DropoutAddRMSNorm as mixed-precision training runs it: float32 weight, low-precision activations."""
    torch.manual_seed(5)
    mod = fa_kernels.DropoutAddRMSNorm(256, prenorm=True, p=0.1, residual_in_fp32=True, device=device)
    mod.weight.data.normal_(1.0, 0.1)
    x0 = torch.randn(3, 7, 256, device=device, dtype=x_dtype, requires_grad=True)
    residual = torch.randn(3, 7, 256, device=device, dtype=torch.float32, requires_grad=True)
    if backend:
        fa_kernels.set_backend(backend)
    try:
        with torch.autocast(device_type=device, dtype=x_dtype, enabled=autocast):
            z, new_residual = mod(x0, residual)
        (z.float().sum() + new_residual.sum()).backward()
    finally:
        fa_kernels.set_backend("auto")
    assert z.dtype == x_dtype and new_residual.dtype == torch.float32
    assert mod.weight.grad is not None and mod.weight.grad.dtype == torch.float32
    assert x0.grad is not None and x0.grad.dtype == x_dtype
    return [z, new_residual, x0.grad, residual.grad, mod.weight.grad]  # type: ignore[list-item]


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_module_under_autocast_matches_no_autocast(backend, device):  # type: ignore[no-untyped-def]
    x_dtype = F16 if device == "cpu" else B16
    plain = _module_case(device, backend, x_dtype, autocast=False)
    under = _module_case(device, backend, x_dtype, autocast=True)
    for a, b in zip(plain, under, strict=True):
        assert torch.equal(a, b)


# -- GPU: the whole matrix on every backend -------------------------------------------------------

def _has_ext() -> bool:
    from fa_kernels import backend

    return backend.cuda_extension() is not None


GPU_MATRIX = [c for c in itertools.product(
    [F32, F16, B16],  # x
    ["x", F32],  # weight: x's dtype or float32
    [None, "x", F32],  # residual: none, x's dtype, float32
    [False, True],  # residual_in_fp32
    [False, True],  # prenorm
    [0.0, 0.1],  # dropout
) if not (c[0] == F32 and (c[1] == F32 or c[2] == F32))]  # float32 x: those are the "x" cases again


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton", "reference"])
def test_gpu_mixed_precision_matrix(backend: str) -> None:
    if backend == "cuda" and not _has_ext():
        pytest.skip("fa_kernels._C not built")
    failures = []
    with warnings.catch_warnings():
        # the cuda kernel must run every combination itself: a fallback to Triton fails the case
        warnings.filterwarnings("error", message="fa_kernels: the cuda norm kernel")
        for i, (x_dtype, w, r, in_fp32, prenorm, p) in enumerate(GPU_MATRIX):
            w_dtype = x_dtype if w == "x" else w
            r_dtype = None if r is None else (x_dtype if r == "x" else r)
            m, n = (300, 1032) if i % 2 == 0 else (77, 1000)  # 16-byte packs, and element-wise access
            try:
                run_mixed(m, n, "cuda", backend, x_dtype=x_dtype, w_dtype=w_dtype, res_dtype=r_dtype,
                          residual_in_fp32=in_fp32, prenorm=prenorm, p=p)
            except Exception as exc:  # collect every failing combination, assertion or error
                failures.append(f"x={x_dtype} w={w_dtype} res={r_dtype} in_fp32={in_fp32} prenorm={prenorm} "
                                f"p={p}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, f"{len(failures)} of {len(GPU_MATRIX)} failed:\n" + "\n".join(failures)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
@pytest.mark.parametrize("out_dtype", [F32, F16])
def test_gpu_out_dtype(backend: str, out_dtype: torch.dtype) -> None:
    if backend == "cuda" and not _has_ext():
        pytest.skip("fa_kernels._C not built")
    run_mixed(257, 4096, "cuda", backend, x_dtype=B16, w_dtype=F32, res_dtype=B16, residual_in_fp32=False,
              prenorm=True, p=0.1, out_dtype=out_dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
def test_gpu_issue_snippet_and_module(backend: str) -> None:
    """The calls issue #10 reported as SIGSEGV, against the reference."""
    if backend == "cuda" and not _has_ext():
        pytest.skip("fa_kernels._C not built")
    run_mixed(512, 4096, "cuda", backend, x_dtype=B16, w_dtype=F32, res_dtype=B16, residual_in_fp32=True,
              prenorm=True, p=0.0)
    plain = _module_case("cuda", backend, B16, autocast=False)
    under = _module_case("cuda", backend, B16, autocast=True)
    for a, b in zip(plain, under, strict=True):
        assert torch.equal(a, b)
