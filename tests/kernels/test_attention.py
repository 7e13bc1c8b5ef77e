"""flash_attn_func and friends against the float64 reference, forward and backward.

CPU (interpreter): small odd shapes in fp16 (the interpreter's bf16 tl.dot is wrong, REFERENCE.md 8).
GPU (marker gpu): real sizes, bf16 and fp16, every head dim.
"""

from __future__ import annotations

import math

import pytest
import torch

import fa_kernels
from fa_kernels import reference

from .helpers import assert_close, keep_rate_ok

GPU = torch.cuda.is_available()


def make_qkv(b: int, sq: int, sk: int, h: int, hk: int, d: int, dtype: torch.dtype, device: str):
    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, device=device).requires_grad_()

    return rnd(b, sq, h, d), rnd(b, sk, hk, d), rnd(b, sk, hk, d)


def check(q, k, v, *, dtype, causal=False, window=(-1, -1), softcap=0.0, alibi=None, scale=None,
          grad_factor=2.0, backend=None):
    out, lse, _ = fa_kernels.flash_attn_func(q, k, v, softmax_scale=scale, causal=causal,
                                             window_size=window, softcap=softcap,
                                             alibi_slopes=alibi, return_attn_probs=True, backend=backend)
    dout = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    wide = torch.float64 if q.device.type == "cpu" else torch.float32
    ref_in = [t.detach().to(wide).requires_grad_() for t in (q, k, v)]
    ref, ref_lse = reference.attention(*ref_in, softmax_scale=scale, causal=causal, window_size=window,
                                       softcap=softcap, alibi_slopes=alibi)
    rdq, rdk, rdv = torch.autograd.grad(ref, ref_in, dout.to(wide))
    assert_close(out, ref, dtype, "out")
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite), "rows with no visible key must have lse=+inf"
    assert_close(lse[finite], ref_lse[finite], torch.float32, "lse", factor=100)
    for name, got, want in (("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert_close(got, want, dtype, name, factor=grad_factor)


CPU_CASES = [
    # b, sq, sk, h, hk, d, causal
    (1, 40, 40, 2, 2, 32, False),
    (2, 37, 53, 2, 1, 64, True),    # sk > sq: bottom-right causal, GQA 2:1
    (1, 70, 33, 4, 2, 40, True),    # sq > sk: leading rows see no key
    (1, 45, 45, 3, 3, 24, False),   # head dim not a power of two
    (2, 17, 81, 4, 1, 16, False),   # MQA
]


@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk", "d", "causal"), CPU_CASES)
def test_forward_backward_matches_reference(b, sq, sk, h, hk, d, causal, device):
    torch.manual_seed(sq * 1000 + sk)
    q, k, v = make_qkv(b, sq, sk, h, hk, d, torch.float16, device)
    check(q, k, v, dtype=torch.float16, causal=causal)


def test_sliding_window_softcap_alibi_and_scale(device):
    q, k, v = make_qkv(2, 50, 61, 4, 2, 32, torch.float16, device)
    check(q, k, v, dtype=torch.float16, window=(8, 3))
    check(q, k, v, dtype=torch.float16, causal=True, window=(12, -1))
    check(q, k, v, dtype=torch.float16, softcap=5.0, scale=0.3)
    slopes = torch.rand(2, 4, dtype=torch.float32, device=device)
    check(q, k, v, dtype=torch.float16, alibi=slopes, causal=True)


def test_packed_variants_equal_the_plain_call(device):
    qkv = torch.randn(2, 33, 3, 2, 32, dtype=torch.float16, device=device)
    plain = fa_kernels.flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=True)
    packed = fa_kernels.flash_attn_qkvpacked_func(qkv, causal=True)
    kv = fa_kernels.flash_attn_kvpacked_func(qkv[:, :, 0], qkv[:, :, 1:], causal=True)
    assert torch.equal(plain, packed) and torch.equal(plain, kv)


def test_varlen_equals_per_sequence_calls(device):
    lens_q, lens_k = [5, 37, 20], [9, 37, 41]
    h, hk, d = 4, 2, 32
    q = torch.randn(sum(lens_q), h, d, dtype=torch.float16, device=device, requires_grad=True)
    k = torch.randn(sum(lens_k), hk, d, dtype=torch.float16, device=device, requires_grad=True)
    v = torch.randn(sum(lens_k), hk, d, dtype=torch.float16, device=device, requires_grad=True)
    cu_q = torch.tensor([0, *torch.tensor(lens_q).cumsum(0).tolist()], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, *torch.tensor(lens_k).cumsum(0).tolist()], dtype=torch.int32, device=device)
    out, lse, probs = fa_kernels.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k),
                                                        causal=True, return_attn_probs=True)
    assert lse.shape == (h, sum(lens_q)) and probs is None
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    ref_outs, ref_grads = [], [torch.zeros_like(t, dtype=torch.float64) for t in (q, k, v)]
    for i in range(3):
        sl_q, sl_k = slice(int(cu_q[i]), int(cu_q[i + 1])), slice(int(cu_k[i]), int(cu_k[i + 1]))
        parts = [t.detach()[s][None].double().requires_grad_() for t, s in ((q, sl_q), (k, sl_k), (v, sl_k))]
        ref, _ = reference.attention(*parts, causal=True)
        ref_outs.append(ref[0])
        g = torch.autograd.grad(ref, parts, dout[sl_q][None].double())
        for acc, part, s in zip(ref_grads, g, (sl_q, sl_k, sl_k), strict=True):
            acc[s] += part[0]
    assert_close(out, torch.cat(ref_outs), torch.float16, "varlen out")
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref_grads, strict=True):
        assert_close(got, want, torch.float16, f"varlen {name}", factor=2)


def test_dropout_matches_reference_through_the_returned_mask(device):
    p = 0.2
    q, k, v = make_qkv(2, 48, 64, 2, 1, 32, torch.float16, device)
    torch.manual_seed(7)
    out, _lse, probs = fa_kernels.flash_attn_func(q, k, v, dropout_p=p, causal=True, return_attn_probs=True)
    keep = probs >= 0  # flash_attn's convention: dropped probabilities come back negated
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    ref_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref, _ = reference.attention(*ref_in, causal=True, dropout_mask=keep, dropout_p=p)
    ref_grads = torch.autograd.grad(ref, ref_in, dout.double())
    assert_close(out, ref, torch.float16, "dropout out")
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref_grads, strict=True):
        assert_close(got, want, torch.float16, f"dropout {name}", factor=2)
    visible = reference.attention_bias_mask(48, 64, causal=True, window_size=(-1, -1), device=q.device)
    visible = visible.expand_as(keep)
    assert keep_rate_ok(int((probs > 0)[visible].sum()), int(visible.sum()), p)
    torch.manual_seed(7)
    again = fa_kernels.flash_attn_func(q, k, v, dropout_p=p, causal=True)
    assert torch.equal(out, again), "same torch seed must give the same dropout"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"d": 260}, NotImplementedError, "head_dim=260"),
    ({"d": 36}, NotImplementedError, "head_dim=36"),
    ({"dtype": torch.float32}, TypeError, "float16 or bfloat16"),
    ({"hk": 3}, ValueError, "multiple of nheads_k"),
])
def test_unsupported_inputs_raise_clearly(kwargs, error, match, device):
    shape = {"d": 32, "hk": 2, "dtype": torch.float16, **kwargs}
    q = torch.randn(1, 8, 4, shape["d"], dtype=shape["dtype"], device=device)
    k = torch.randn(1, 8, shape["hk"], shape["d"], dtype=shape["dtype"], device=device)
    with pytest.raises(error, match=match):
        fa_kernels.flash_attn_func(q, k, k)


def test_block_table_needs_paged_caches(device):
    q = torch.randn(8, 2, 32, dtype=torch.float16, device=device)
    cu = torch.tensor([0, 8], dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="k must be 4-D"):  # paged: (num_blocks, page_size, nheads_k, d)
        fa_kernels.flash_attn_varlen_func(q, q, q, cu, cu, 8, 8, block_table=cu[None])


# -- GPU: real sizes ---------------------------------------------------------------------------

GPU_CASES = [
    (2, 1024, 1024, 16, 16, 64, False),
    (2, 2048, 2048, 16, 4, 128, True),
    (1, 8192, 8192, 8, 2, 128, True),
    (1, 8191, 8193, 8, 8, 64, False),
    (2, 1000, 3000, 8, 1, 96, True),
    (1, 1537, 1537, 4, 4, 192, True),
    (1, 1025, 2049, 4, 2, 256, False),
    (4, 511, 511, 8, 8, 32, True),
    (1, 2048, 2048, 8, 8, 72, False),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk", "d", "causal"), GPU_CASES)
def test_gpu_real_sizes(b, sq, sk, h, hk, d, causal, dtype):
    torch.manual_seed(sq + d)
    q, k, v = make_qkv(b, sq, sk, h, hk, d, dtype, "cuda")
    check(q, k, v, dtype=dtype, causal=causal, scale=1.0 / math.sqrt(d))


@pytest.mark.gpu
def test_gpu_features_bf16():
    q, k, v = make_qkv(2, 1500, 2100, 8, 2, 128, torch.bfloat16, "cuda")
    check(q, k, v, dtype=torch.bfloat16, window=(256, 64))
    check(q, k, v, dtype=torch.bfloat16, causal=True, softcap=30.0)
    check(q, k, v, dtype=torch.bfloat16, alibi=torch.rand(8, device="cuda"))


# -- GPU: the compiled CUDA backend (present only in a wheel built by `fa-dist build`) ----------------

def _cuda_attention() -> bool:
    from fa_kernels.cuda import attention

    return attention.compiled()


needs_cuda_attention = pytest.mark.skipif(not _cuda_attention(), reason="fa_kernels._C has no attention ops")

CUDA_CASES = [
    (2, 1024, 1024, 16, 16, 64, False),
    (2, 2048, 2048, 16, 4, 128, True),
    (1, 8192, 8192, 8, 2, 128, True),
    (1, 8191, 8193, 8, 8, 64, False),
    (2, 1000, 3000, 8, 1, 128, True),   # sk > sq: bottom-right causal; MQA
    (1, 3000, 1000, 4, 2, 64, True),    # sq > sk: the leading rows see no key
    (3, 77, 131, 4, 2, 128, False),     # smaller than one tile, odd lengths
    (2, 1, 37, 2, 1, 64, True),       # one query (decoding) over all keys
]


@pytest.mark.gpu
@needs_cuda_attention
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk", "d", "causal"), CUDA_CASES)
def test_gpu_cuda_backend(b, sq, sk, h, hk, d, causal, dtype):
    torch.manual_seed(sq + d + 1)
    q, k, v = make_qkv(b, sq, sk, h, hk, d, dtype, "cuda")
    check(q, k, v, dtype=dtype, causal=causal, scale=0.5 / math.sqrt(d), backend="cuda")


@pytest.mark.gpu
@needs_cuda_attention
def test_gpu_cuda_backend_takes_strided_views_and_is_deterministic():
    qkv = torch.randn(2, 700, 3, 8, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    q, k, v = qkv.unbind(2)  # strided views into one packed tensor
    check(q, k, v, dtype=torch.bfloat16, causal=True, backend="cuda")
    grads = []
    for _ in range(2):
        out = fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda")
        grads.append(torch.autograd.grad(out, qkv, torch.ones_like(out))[0])
    assert torch.equal(grads[0], grads[1]), "the backward must not depend on the order of atomics"


@pytest.mark.gpu
@needs_cuda_attention
def test_gpu_cuda_backend_raises_naming_the_argument_it_cannot_take():
    q, k, v = make_qkv(1, 300, 300, 4, 4, 96, torch.bfloat16, "cuda")
    with pytest.raises(NotImplementedError, match="head_dim=96"):
        fa_kernels.flash_attn_func(q, k, v, backend="cuda")
    q, k, v = make_qkv(1, 300, 300, 4, 4, 64, torch.bfloat16, "cuda")
    with pytest.raises(NotImplementedError, match="softcap"):
        fa_kernels.flash_attn_func(q, k, v, softcap=20.0, backend="cuda")


@pytest.mark.gpu
@needs_cuda_attention
def test_gpu_cuda_ops_trace_under_torch_compile_and_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v = (t.detach() for t in make_qkv(2, 256, 256, 4, 2, 64, torch.float16, "cuda"))
    ops = torch.ops.fa_kernels
    eager_out, eager_lse = ops.flash_fwd(q, k, v, 0.125, True)
    out, lse = torch.compile(lambda q, k, v: ops.flash_fwd(q, k, v, 0.125, True), fullgraph=True)(q, k, v)
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse)
    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        fout, flse = ops.flash_fwd(fq, fk, fv, 0.125, True)
        grads = ops.flash_bwd(fout, fq, fk, fv, fout, flse, 0.125, True)
    assert fout.shape == q.shape and flse.shape == (2, 4, 256) and flse.dtype == torch.float32
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
    through_api = torch.compile(lambda q, k, v: fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda"))
    assert torch.equal(through_api(q, k, v), fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda"))
