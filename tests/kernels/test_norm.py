"""rms_norm_fn / layer_norm_fn / DropoutAddRMSNorm against the float64 reference, forward and backward."""

from __future__ import annotations

import pytest
import torch

import fa_kernels
from fa_kernels import reference

from .helpers import assert_close, keep_rate_ok


def run_case(m, n, dtype, device, *, p=0.0, prenorm=True, residual=True, rowscale=False, rms=True,
             residual_in_fp32=False, zero_centered=False, tol_factor=1.0, backend=None):
    x = torch.randn(m, n, dtype=dtype, device=device, requires_grad=True)
    res = torch.randn(m, n, dtype=dtype, device=device, requires_grad=True) if residual else None
    w = (1 + 0.1 * torch.randn(n, dtype=dtype, device=device)).requires_grad_()
    b = (0.1 * torch.randn(n, dtype=dtype, device=device)).requires_grad_() if not rms else None
    rs = torch.rand(m, dtype=dtype, device=device) if rowscale else None
    outs = fa_kernels.layer_norm_fn(x, w, b, residual=res, eps=1e-6, dropout_p=p, rowscale=rs,
                                    prenorm=prenorm, residual_in_fp32=residual_in_fp32,
                                    zero_centered_weight=zero_centered, is_rms_norm=rms,
                                    return_dropout_mask=True, backend=backend)
    y, s, keep, keep1 = outs if prenorm else (outs[0], None, *outs[1:])
    assert keep1 is None and (keep is None) == (p == 0)
    dy = torch.randn_like(y)
    ds = torch.randn_like(s) if prenorm else None
    inputs = [t for t in (x, w, b, res) if t is not None]
    grads = torch.autograd.grad([y] + ([s] if prenorm else []), inputs, [dy] + ([ds] if prenorm else []))
    wide = torch.float64 if device == "cpu" else torch.float32
    ref_inputs = [t.detach().to(wide).requires_grad_() for t in inputs]
    rx, rw, *rest = ref_inputs
    rb = rest.pop(0) if b is not None else None
    rres = rest.pop(0) if res is not None else None
    fn = reference.rms_norm if rms else reference.layer_norm
    kw = {"upcast": False} if rms else {}
    ry, rsum = fn(rx, rw, rb, residual=rres, eps=1e-6, dropout_mask=keep, dropout_p=p,
                  rowscale=rs.to(wide) if rs is not None else None, zero_centered_weight=zero_centered, **kw)
    ref_grads = torch.autograd.grad([ry.to(wide)] + ([rsum] if prenorm else []), ref_inputs,
                                    [dy.to(wide)] + ([ds.to(wide)] if prenorm else []))
    assert y.dtype == dtype
    assert_close(y, ry, dtype, "y", tol_factor)
    if prenorm:
        expected = res.dtype if res is not None else (torch.float32 if residual_in_fp32 else dtype)
        assert s.dtype == expected
        assert_close(s, rsum, dtype, "residual_out", tol_factor)
    names = ["dx", "dw"] + (["db"] if b is not None else []) + (["dresidual"] if res is not None else [])
    for name, got, want in zip(names, grads, ref_grads, strict=True):
        assert_close(got, want, dtype, name, 2 * tol_factor)
    return keep


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("m", "n"), [(7, 100), (16, 256), (3, 1000)])
def test_prenorm_with_residual(m, n, dtype, device):
    run_case(m, n, dtype, device)


@pytest.mark.parametrize("flags", [
    {"residual": False, "prenorm": False},
    {"residual": False, "prenorm": True, "residual_in_fp32": True},
    {"rowscale": True},
    {"zero_centered": True, "residual": False},
    {"rms": False},
    {"rms": False, "residual": False, "prenorm": False},
])
def test_options(flags, device):
    run_case(9, 192, torch.bfloat16, device, **flags)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_through_the_returned_mask(p, device):
    keep = run_case(64, 512, torch.bfloat16, device, p=p)
    assert keep is not None and keep.dtype == torch.bool
    assert keep_rate_ok(int(keep.sum()), keep.numel(), p)
    run_case(8, 96, torch.float16, device, p=p, rowscale=True, prenorm=False)


def test_dropout_is_reproducible_with_the_torch_seed(device):
    x = torch.randn(32, 256, device=device, dtype=torch.bfloat16)
    w = torch.ones(256, device=device, dtype=torch.bfloat16)
    torch.manual_seed(3)
    a = fa_kernels.rms_norm_fn(x, w, None, dropout_p=0.3, return_dropout_mask=True)
    torch.manual_seed(3)
    b = fa_kernels.rms_norm_fn(x, w, None, dropout_p=0.3, return_dropout_mask=True)
    c = fa_kernels.rms_norm_fn(x, w, None, dropout_p=0.3, return_dropout_mask=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_dropout_add_rms_norm_module(device):
    mod = fa_kernels.DropoutAddRMSNorm(128, prenorm=True, p=0.25, device=device, dtype=torch.bfloat16)
    assert torch.equal(mod.weight, torch.ones_like(mod.weight))
    x0 = torch.randn(4, 10, 128, device=device, dtype=torch.bfloat16)
    residual = torch.randn_like(x0)
    mod.eval()
    z, x = mod(x0, residual)
    ref_z, ref_x = reference.rms_norm(x0, mod.weight, None, residual=residual, eps=1e-5)
    assert_close(x, ref_x, torch.bfloat16, "eval residual (no dropout)")
    assert_close(z, ref_z, torch.bfloat16, "eval z")
    mod.train()
    z_train, x_train = mod(x0, residual)
    dropped = (x_train.float() - residual.float()).eq(0) & x0.ne(0)
    assert 0.15 < dropped.float().mean().item() < 0.35
    assert z_train.shape == x0.shape


def test_rms_norm_module_defaults(device):
    mod = fa_kernels.RMSNorm(64, device=device, dtype=torch.float16)
    x = torch.randn(5, 64, device=device, dtype=torch.float16)
    ref, _ = reference.rms_norm(x, mod.weight, None, eps=1e-5)
    assert_close(mod(x), ref, torch.float16, "RMSNorm")


def test_preallocated_outputs_are_filled(device):
    x = torch.randn(6, 64, device=device, dtype=torch.bfloat16)
    res = torch.randn_like(x)
    w = torch.rand(64, device=device, dtype=torch.bfloat16)
    out = torch.full_like(x, float("nan"))
    res_out = torch.full_like(x, float("nan"))
    y, s = fa_kernels.rms_norm_fn(x, w, None, residual=res, prenorm=True, out=out, residual_out=res_out)
    assert y.data_ptr() == out.data_ptr() and s.data_ptr() == res_out.data_ptr()
    assert not out.isnan().any() and not res_out.isnan().any()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"x1": True}, NotImplementedError, "x1"),
    ({"n": 40000}, NotImplementedError, "hidden size 40000"),
    ({"dropout_p": 1.0}, ValueError, "dropout_p"),
    ({"bad_weight": True}, ValueError, "weight must be"),
])
def test_bad_input_is_refused(kwargs, error, match, device):
    n = kwargs.get("n", 64)
    x = torch.randn(2, n, device=device, dtype=torch.bfloat16)
    w = torch.ones(n + (1 if kwargs.get("bad_weight") else 0), device=device, dtype=torch.bfloat16)
    with pytest.raises(error, match=match):
        fa_kernels.rms_norm_fn(x, w, None, x1=x if kwargs.get("x1") else None,
                               dropout_p=kwargs.get("dropout_p", 0.0))


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n"), [(4096, 4096), (1024, 8192), (8192, 2048), (257, 16384), (100, 32768)])
@pytest.mark.parametrize("p", [0.0, 0.1])
def test_gpu_real_sizes(m, n, p):
    keep = run_case(m, n, torch.bfloat16, "cuda", p=p)
    if p:
        assert keep_rate_ok(int(keep.sum()), keep.numel(), p)


# -- the compiled CUDA backend (present only in a wheel built by `fa-dist build`) -------------------

def _has_cuda_extension() -> bool:
    from fa_kernels import backend

    return backend.cuda_extension() is not None


needs_extension = pytest.mark.skipif(not _has_cuda_extension(), reason="fa_kernels._C not built")


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize(("m", "n"), [(4096, 4096), (1000, 8192), (8191, 2048), (64, 32768), (33, 1000)])
@pytest.mark.parametrize("p", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_cuda_backend(m, n, p, dtype):
    run_case(m, n, dtype, "cuda", p=p, backend="cuda")
    run_case(m, n, dtype, "cuda", p=p, prenorm=False, backend="cuda")
    run_case(m, n, dtype, "cuda", p=p, residual=False, residual_in_fp32=True, backend="cuda")


@pytest.mark.gpu
@needs_extension
def test_gpu_cuda_and_triton_draw_the_same_dropout_mask():
    x = torch.randn(257, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(4096, device="cuda", dtype=torch.bfloat16)
    masks = []
    for name in ("cuda", "triton"):
        torch.manual_seed(11)
        masks.append(fa_kernels.rms_norm_fn(x, w, None, dropout_p=0.3, return_dropout_mask=True, backend=name)[1])
    assert torch.equal(masks[0], masks[1])


@pytest.mark.gpu
@needs_extension
def test_gpu_cuda_backend_refuses_what_it_lacks_by_name_and_falls_back_on_auto():
    x = torch.randn(8, 256, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(256, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(NotImplementedError, match="rowscale"):
        fa_kernels.rms_norm_fn(x, w, None, rowscale=torch.ones(8, device="cuda"), backend="cuda")
    fa_kernels.rms_norm_fn(x, w, None, rowscale=torch.ones(8, device="cuda", dtype=torch.bfloat16))


# -- backend="auto": forward and backward on different backends (fa_kernels/norm_split.py) ----------

@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("pair", [("triton", "cuda"), ("cuda", "triton")])
@pytest.mark.parametrize("p", [0.0, 0.1])
@pytest.mark.parametrize(("m", "n"), [(4096, 4096), (1000, 8192), (33, 1000)])
def test_gpu_forward_and_backward_on_different_backends(pair, p, m, n, monkeypatch):
    """The backward regenerates the other backend's dropout mask and reads its saved state."""
    from fa_kernels import norm as norm_module

    monkeypatch.setattr(norm_module, "_backends", lambda *args: pair)
    run_case(m, n, torch.bfloat16, "cuda", p=p)
    run_case(m, n, torch.float16, "cuda", p=p, prenorm=False)
    run_case(m, n, torch.bfloat16, "cuda", p=p, residual=False, residual_in_fp32=True)


@pytest.mark.gpu
@needs_extension
def test_gpu_auto_takes_each_direction_from_the_table(monkeypatch):
    from fa_kernels import auto, auto_table, backend
    from fa_kernels import norm as norm_module
    from fa_kernels.auto import NormShape

    x = torch.randn(2048, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    arch = backend.device_arch(torch.cuda.current_device())
    shape = NormShape(2048, 1024)
    table = {auto.key("norm", "forward", shape): "cuda", auto.key("norm", "backward", shape): "triton"}
    monkeypatch.setattr(auto_table, "TABLE", {arch: table})
    monkeypatch.setattr(auto_table, "SOURCES", {arch: "this test"})
    auto.choose.cache_clear()
    try:
        assert norm_module._backends("auto", x, (x,), 0.0) == ("cuda", "triton")
        with torch.no_grad():  # no gradient will flow: the backward's choice is not asked
            assert norm_module._backends("auto", x, (x,), 0.0) == ("cuda", "cuda")
        assert backend.explain("norm", "backward", shape, x.device) == ("triton", f"{arch} table (this test): "
                                                                        f"{auto.key('norm', 'backward', shape)}")
        run_case(2048, 1024, torch.bfloat16, "cuda", backend="auto")
    finally:
        auto.choose.cache_clear()
