"""The Hopper (sm_90a) attention backward of the compiled backend (csrc/attention/flash_bwd_sm90.cu).

GPU only, and only on compute capability 9.0 with a build that has the attention ops: the sm90 backward
(FA_KERNELS_SM90_BWD=1) against the float32 reference and against the sm_80 backward (the variable unset)
in the same process; which kernels ran is read off the profiler's kernel names.
"""

from __future__ import annotations

import math

import pytest
import torch

import fa_kernels
from fa_kernels import reference

from .helpers import TOL
from .test_attention import make_qkv, needs_cuda_attention

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)

pytestmark = [
    pytest.mark.gpu,
    needs_cuda_attention,
    pytest.mark.skipif(not HOPPER, reason="needs a compute capability 9.0 GPU (H100/H200)"),
]

SM90_KERNELS = {"flash_bwd_sm90_dkdv_kernel", "flash_bwd_sm90_dq_kernel"}
SM80_KERNELS = {"flash_bwd_dkdv_kernel", "flash_bwd_dq_kernel"}


@pytest.fixture
def sm90_bwd(monkeypatch: pytest.MonkeyPatch):
    """sm90_bwd(True) the sm90 backward, sm90_bwd(False) the sm_80 one (the default)."""
    def use(on: bool) -> None:
        if on:
            monkeypatch.setenv("FA_KERNELS_SM90_BWD", "1")
        else:
            monkeypatch.delenv("FA_KERNELS_SM90_BWD", raising=False)
    return use


Grads = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.fa_kernels.flash_fwd(q, k, v, scale, causal)


def backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
             lse: torch.Tensor, scale: float, causal: bool) -> Grads:
    grads = torch.ops.fa_kernels.flash_bwd(dout, q, k, v, out, lse, scale, causal)
    torch.cuda.synchronize()
    return grads


def bwd_kernels(case: tuple) -> set[str]:
    """Names of the flash_bwd kernels one backward call launched."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        backward(*case)
    names = {e.name for e in prof.events() if "flash_bwd" in e.name}
    return {kernel for kernel in SM90_KERNELS | SM80_KERNELS if any(kernel in n for n in names)}


def make_case(b: int, sq: int, sk: int, h: int, hk: int, d: int, dtype: torch.dtype, causal: bool,
              scale: float | None = None) -> tuple:
    q, k, v = (t.detach() for t in make_qkv(b, sq, sk, h, hk, d, dtype, "cuda"))
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out, lse = forward(q, k, v, scale, causal)
    dout = torch.randn_like(out)
    return dout, q, k, v, out, lse, scale, causal


def reference_grads(dout, q, k, v, out, lse, scale, causal) -> Grads:
    inputs = [t.float().requires_grad_() for t in (q, k, v)]
    ref, _ = reference.attention(*inputs, softmax_scale=scale, causal=causal)
    return torch.autograd.grad(ref, inputs, dout.float())


def assert_grad_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Relative error within twice the dtype's tolerance, against at least 1e-3 an element: where the exact
    gradient is zero (dq with one key: softmax over one key is constant) both kernels give rounding noise."""
    floor = 1e-3 * want.numel() ** 0.5
    err = (got.double() - want.double()).norm().item() / max(want.double().norm().item(), floor)
    assert not got.isnan().any(), f"{what}: NaN"
    assert err < TOL[dtype] * 2, f"{what}: relative error {err:.2e} > {TOL[dtype] * 2:.1e}"


def test_the_switch_picks_the_kernels_that_run(sm90_bwd):
    case = make_case(1, 256, 256, 4, 4, 128, torch.bfloat16, False)
    sm90_bwd(True)
    assert bwd_kernels(case) == SM90_KERNELS
    sm90_bwd(False)
    assert bwd_kernels(case) == SM80_KERNELS
    sm90_bwd(True)  # read on every call, not cached: back again in the same process
    assert bwd_kernels(case) == SM90_KERNELS


@pytest.mark.parametrize("value", ["0", "", "yes", "true"])
def test_only_the_value_1_switches_it_on(value, monkeypatch):
    monkeypatch.setenv("FA_KERNELS_SM90_BWD", value)
    assert bwd_kernels(make_case(1, 128, 128, 2, 2, 64, torch.float16, True)) == SM80_KERNELS


SHAPES = [
    # b, sq, sk, h, hk
    (1, 1, 1, 8, 2),
    (2, 113, 203, 8, 2),     # odd lengths, sk > sq, GQA 4:1
    (1, 113, 203, 8, 1),     # MQA
    (1, 203, 113, 4, 2),     # sq > sk: causal leaves the first rows without a key
    (2, 1024, 1024, 8, 2),
    (1, 2048, 1, 8, 2),      # one key
    (1, 1, 2048, 8, 1),      # one query over every key
    (2, 300, 300, 4, 4),     # plain MHA, partial last blocks on both sides
    (1, 4096, 4096, 4, 1),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk"), SHAPES)
def test_backward_matches_reference_and_the_sm80_kernels(b, sq, sk, h, hk, d, causal, dtype, sm90_bwd):
    torch.manual_seed(sq * 7 + sk + d)
    case = make_case(b, sq, sk, h, hk, d, dtype, causal)
    sm90_bwd(False)
    old = backward(*case)
    sm90_bwd(True)
    new = backward(*case)
    ref = reference_grads(*case)
    for name, got, was, want in zip(("dq", "dk", "dv"), new, old, ref, strict=True):
        assert_grad_close(got, want, dtype, f"{name} vs reference")
        assert_grad_close(got, was.float(), dtype, f"{name} vs the sm_80 kernels'")


@pytest.mark.parametrize("causal", [False, True])
def test_backward_is_deterministic(causal, sm90_bwd):
    """No atomics: every gradient row is summed by one CTA in a fixed order, so two runs agree bit for bit
    (GQA: dK/dV summed over the group's query heads inside the kernel)."""
    sm90_bwd(True)
    torch.manual_seed(3)
    case = make_case(2, 1500, 1700, 8, 2, 128, torch.float16, causal)
    first = backward(*case)
    second = backward(*case)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_strided_inputs_give_the_contiguous_result(sm90_bwd):
    sm90_bwd(True)
    qkv = torch.randn(2, 700, 3, 8, 128, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv.unbind(2)  # strided views: TMA reads them through their real strides
    out, lse = forward(q, k, v, 0.1, True)
    dout = torch.randn_like(out)
    strided = backward(dout, q, k, v, out, lse, 0.1, True)
    contiguous = backward(dout, q.contiguous(), k.contiguous(), v.contiguous(), out, lse, 0.1, True)
    assert all(torch.equal(a, b) for a, b in zip(strided, contiguous, strict=True))


@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk", "d", "causal", "dtype"), [
    (2, 1024, 1024, 8, 2, 128, True, torch.bfloat16),
    (1, 777, 1333, 8, 1, 64, True, torch.float16),    # odd, sk > sq, MQA
    (1, 1500, 900, 4, 2, 128, True, torch.float16),   # sq > sk
])
def test_autograd_through_the_cuda_backend(b, sq, sk, h, hk, d, causal, dtype, sm90_bwd):
    """flash_attn_func(backend="cuda") end to end with the sm90 backward: the gradients autograd returns."""
    sm90_bwd(True)
    torch.manual_seed(sq + sk)
    q, k, v = make_qkv(b, sq, sk, h, hk, d, dtype, "cuda")
    out = fa_kernels.flash_attn_func(q, k, v, causal=causal, backend="cuda")
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref, _ = reference.attention(*inputs, softmax_scale=1.0 / math.sqrt(d), causal=causal)
    rgrads = torch.autograd.grad(ref, inputs, dout.float())
    for name, got, want in zip(("dq", "dk", "dv"), grads, rgrads, strict=True):
        assert_grad_close(got, want, dtype, name)
