"""flash_attn_with_kvcache, paged varlen (block_table) and attention sinks (s_aux) against the reference.

CPU (interpreter): tiny shapes in fp16 (the interpreter's bf16 tl.dot is wrong, REFERENCE.md 8).
GPU (marker gpu): real decode and prefill sizes in bf16 and fp16.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import fa_kernels
from fa_kernels import reference
from fa_kernels.triton import decode

from .helpers import assert_close


@dataclasses.dataclass(frozen=True)
class Case:
    batch: int = 2
    seqlen_q: int = 1
    seqlen_new: int = 1          # 0: no k/v appended
    nheads: int = 4
    nheads_k: int = 2
    head_dim: int = 32
    capacity: int = 80           # keys a sequence's cache holds
    page_size: int = 0           # 0: contiguous cache
    rotary: str = ""             # "", "interleaved", "half"
    rotary_dim: int = 16
    batch_idx: bool = False
    leftpad: bool = False
    causal: bool = True
    window: tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    alibi: bool = False
    sink: bool = False
    num_splits: int = 1


def make_inputs(c: Case, dtype: torch.dtype, device: str, seed: int = 0) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

    def ints(low: int, high: int, n: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=gen).to(torch.int32).to(device)

    b, hk, d = c.batch, c.nheads_k, c.head_dim
    batch_cache = b + 2 if c.batch_idx else b
    args: dict = {"q": rnd(b, c.seqlen_q, c.nheads, d)}
    if c.page_size:
        pages = c.capacity // c.page_size
        args["k_cache"], args["v_cache"] = rnd(b * pages + 3, c.page_size, hk, d), rnd(b * pages + 3, c.page_size, hk, d)
        order = torch.randperm(b * pages + 3, generator=gen)[: b * pages]  # pages scattered, some unused
        args["block_table"] = order.view(b, pages).to(torch.int32).to(device)
    else:
        args["k_cache"], args["v_cache"] = rnd(batch_cache, c.capacity, hk, d), rnd(batch_cache, c.capacity, hk, d)
    if c.seqlen_new:
        args["k"], args["v"] = rnd(b, c.seqlen_new, hk, d), rnd(b, c.seqlen_new, hk, d)
    seqlens = ints(c.seqlen_q, c.capacity - c.seqlen_new + 1, b)
    args["cache_seqlens"] = seqlens
    if c.batch_idx:
        args["cache_batch_idx"] = torch.randperm(batch_cache, generator=gen)[:b].to(torch.int32).to(device)
    if c.leftpad:
        args["cache_leftpad"] = torch.stack([ints(0, int(n) + 1, 1)[0] for n in seqlens.cpu()])
    if c.rotary:
        angle = torch.rand(c.capacity, c.rotary_dim // 2, generator=gen) * 2 * math.pi
        args["rotary_cos"], args["rotary_sin"] = angle.cos().to(dtype).to(device), angle.sin().to(dtype).to(device)
        args["rotary_interleaved"] = c.rotary == "interleaved"
    if c.alibi:
        args["alibi_slopes"] = (torch.rand(b, c.nheads, generator=gen) * 0.3).to(device)
    if c.sink:
        args["s_aux"] = (torch.randn(c.nheads, generator=gen) * 2).to(dtype).to(device)
    return args


def run_and_compare(c: Case, dtype: torch.dtype, device: str, seed: int = 0) -> None:
    args = make_inputs(c, dtype, device, seed)
    ref_args = {**args, "k_cache": args["k_cache"].clone(), "v_cache": args["v_cache"].clone()}
    common = {"causal": c.causal, "window_size": c.window, "softcap": c.softcap}
    out, lse = fa_kernels.flash_attn_with_kvcache(**args, **common, num_splits=c.num_splits,
                                                  return_softmax_lse=True)
    attn = {**common, "alibi_slopes": ref_args.pop("alibi_slopes", None), "s_aux": ref_args.pop("s_aux", None)}
    q, kc, vc = ref_args.pop("q"), ref_args.pop("k_cache"), ref_args.pop("v_cache")
    ref_args.pop("block_table", None)
    ref_out, ref_lse = reference.kvcache_attention(
        q, kc, vc, ref_args.pop("k", None), ref_args.pop("v", None), **ref_args,
        block_table=args.get("block_table"), **attn)
    assert out.shape == q.shape and out.dtype == dtype
    for name, got, want in (("k_cache", args["k_cache"], kc), ("v_cache", args["v_cache"], vc)):
        assert_same_cache(got, want, name)
    assert_close(out, ref_out, dtype, f"{c} out")
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite), "rows with no visible key must have lse=+inf"
    assert_close(lse[finite], ref_lse[finite], torch.float32, "lse", factor=100)


def assert_same_cache(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """Equal up to one rounding of the stored dtype: a rotated key is computed in float32, where the GPU
    may fuse a multiply-add the reference rounds twice. A misplaced append differs by O(1)."""
    ulp = torch.finfo(want.dtype).eps
    diff = (got.float() - want.float()).abs()
    bad = diff > ulp * want.float().abs()
    assert not bad.any(), f"{name}: {int(bad.sum())} elements differ, e.g. by {diff.max().item():.3g}"


CPU_CASES = [
    Case(),                                                              # decode, GQA 2:1, append
    Case(num_splits=3, nheads_k=1, leftpad=True),                        # split-KV, MQA, left padding
    Case(page_size=32, capacity=96, num_splits=0, rotary="half"),       # tiles within pages, NeoX rotary
    Case(page_size=16, seqlen_q=5, seqlen_new=5, rotary="interleaved", num_splits=2),  # chunked prefill
    Case(seqlen_q=3, seqlen_new=3, batch_idx=True, rotary="interleaved", causal=False, rotary_dim=32),
    Case(seqlen_q=4, seqlen_new=0, window=(9, 0), causal=False, leftpad=True, num_splits=2),
    Case(seqlen_q=2, seqlen_new=2, page_size=48, capacity=96, window=(20, -1), softcap=4.0, alibi=True,
         sink=True, num_splits=3),                                       # page size 48, every extra
]


@pytest.mark.parametrize("case", CPU_CASES, ids=range(len(CPU_CASES)))
def test_kvcache_matches_reference(case, device):
    run_and_compare(case, torch.float16, device)


def test_split_and_unsplit_agree_and_an_int_seqlen_broadcasts(device):
    c = Case(batch=1, nheads=2, nheads_k=1, capacity=64)
    args = make_inputs(c, torch.float16, device)
    outs = []
    for splits in (1, 4):
        one = {**args, "k_cache": args["k_cache"].clone(), "v_cache": args["v_cache"].clone()}
        one["cache_seqlens"] = int(args["cache_seqlens"][0])
        outs.append(fa_kernels.flash_attn_with_kvcache(**one, causal=True, num_splits=splits,
                                                       return_softmax_lse=True))
    assert_close(outs[1][0], outs[0][0], torch.float16, "split out")
    assert_close(outs[1][1], outs[0][1], torch.float32, "split lse")


def test_reference_backend_runs_the_same_call(device):
    c = Case(page_size=16, rotary="half", sink=True)
    args = make_inputs(c, torch.float16, device)
    ref = {**args, "k_cache": args["k_cache"].clone(), "v_cache": args["v_cache"].clone()}
    out = fa_kernels.flash_attn_with_kvcache(**args, causal=True)
    ref_out = fa_kernels.flash_attn_with_kvcache(**ref, causal=True, backend="reference")
    assert_same_cache(args["k_cache"], ref["k_cache"], "k_cache")
    assert_close(out, ref_out, torch.float16, "reference backend")


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"k": None}, ValueError, "together"),
    ({"cache_seqlens": None}, ValueError, "cache_seqlens"),
    ({"k": None, "v": None, "rotary_cos": "cos"}, ValueError, "new k"),
    ({"cache_batch_idx": "idx"}, ValueError, "block_table"),
    ({"num_splits": -1}, ValueError, "num_splits"),
    ({"cache_seqlens": "float"}, TypeError, "int32"),
    ({"s_aux": "wrong_shape"}, ValueError, "s_aux"),
])
def test_bad_calls_raise_clearly(change, error, match, device):
    args = make_inputs(Case(page_size=16), torch.float16, device)
    values = {"cos": torch.ones(80, 8, device=device), "idx": torch.zeros(2, dtype=torch.int32, device=device),
              "float": torch.ones(2, device=device), "wrong_shape": torch.zeros(3, device=device)}
    for key, value in change.items():
        args[key] = values.get(value, value) if isinstance(value, str) else value
    if "rotary_cos" in args:
        args["rotary_sin"] = args["rotary_cos"]
    with pytest.raises(error, match=match):
        fa_kernels.flash_attn_with_kvcache(**args)


def test_num_splits_heuristic():
    assert decode.num_splits(ctas=132, key_tiles=2048, sms=132) == 1          # every SM has a CTA
    assert decode.num_splits(ctas=4, key_tiles=2048, sms=132) == 66           # 2 CTAs an SM
    assert decode.num_splits(ctas=32, key_tiles=512, sms=132) == 9
    assert decode.num_splits(ctas=4, key_tiles=16, sms=132) == 8              # >= 2 tiles a split
    assert decode.num_splits(ctas=4, key_tiles=3, sms=132) == 1
    assert decode.num_splits(ctas=4, key_tiles=2048, sms=132, requested=500) == decode.MAX_SPLITS
    assert decode.num_splits(ctas=4, key_tiles=5, sms=132, requested=8) == 5  # never an empty split


# -- paged varlen (block_table in flash_attn_varlen_func) -------------------------------------------

def paged_varlen_inputs(lens_q, lens_k, page, h, hk, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pages = max(-(-n // page) for n in lens_k)
    blocks = len(lens_k) * pages + 2
    k_cache = torch.randn(blocks, page, hk, d, generator=gen).to(dtype).to(device)
    v_cache = torch.randn(blocks, page, hk, d, generator=gen).to(dtype).to(device)
    table = torch.randperm(blocks, generator=gen)[: len(lens_k) * pages].view(len(lens_k), pages)
    q = torch.randn(sum(lens_q), h, d, generator=gen).to(dtype).to(device)

    def cu(lens):
        return torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device=device)

    return q, k_cache, v_cache, cu(lens_q), cu(lens_k), table.to(torch.int32).to(device)


def test_varlen_with_block_table_matches_contiguous_keys(device):
    lens_q, lens_k = [3, 17, 1], [20, 17, 45]
    q, kc, vc, cu_q, cu_k, table = paged_varlen_inputs(lens_q, lens_k, 16, 4, 2, 32, torch.float16, device)
    sinks = torch.randn(4, device=device)
    out, lse, _ = fa_kernels.flash_attn_varlen_func(q, kc, vc, cu_q, cu_k, max(lens_q), max(lens_k),
                                                    causal=True, block_table=table, s_aux=sinks,
                                                    return_attn_probs=True)
    ref, ref_lse = reference.paged_varlen_attention(q, kc, vc, cu_q, cu_k, table, causal=True, s_aux=sinks)
    assert_close(out, ref, torch.float16, "paged varlen out")
    assert_close(lse, ref_lse, torch.float32, "paged varlen lse", factor=100)
    # the same keys gathered into a packed (total_k, hk, d) tensor through the unpaged varlen path
    rows = [kc.shape[1] * table[b, j // kc.shape[1]] + j % kc.shape[1]
            for b, n in enumerate(lens_k) for j in range(n)]
    k, v = (c.flatten(0, 1)[torch.stack(rows).long()] for c in (kc, vc))
    plain = fa_kernels.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True,
                                              s_aux=sinks)
    assert_close(out, plain, torch.float16, "paged vs packed")


def test_varlen_with_block_table_is_forward_only(device):
    q, kc, vc, cu_q, cu_k, table = paged_varlen_inputs([4], [4], 16, 2, 2, 32, torch.float16, device)
    out = fa_kernels.flash_attn_varlen_func(q.requires_grad_(), kc, vc, cu_q, cu_k, 4, 4, block_table=table)
    with pytest.raises(NotImplementedError, match="no backward"):
        out.sum().backward()


# -- attention sinks (s_aux) in the differentiable functions ----------------------------------------

def check_sinks(q, k, v, sinks, *, dtype, causal, window=(-1, -1), cu=None, max_len=0):
    if cu is None:
        out, lse, _ = fa_kernels.flash_attn_func(q, k, v, causal=causal, window_size=window, s_aux=sinks,
                                                 return_attn_probs=True)
    else:
        out, lse, _ = fa_kernels.flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, causal=causal,
                                                        window_size=window, s_aux=sinks,
                                                        return_attn_probs=True)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v, sinks), dout)
    wide = torch.float64 if q.device.type == "cpu" else torch.float32
    ref_in = [t.detach().to(wide).requires_grad_() for t in (q, k, v, sinks)]
    if cu is None:
        ref, ref_lse = reference.attention(*ref_in[:3], causal=causal, window_size=window, s_aux=ref_in[3])
    else:
        ref, ref_lse = _varlen_reference(ref_in, cu, causal, window)
    ref_grads = torch.autograd.grad(ref, ref_in, dout.to(wide))
    assert_close(out, ref, dtype, "sink out")
    assert_close(lse, ref_lse, torch.float32, "sink lse", factor=100)
    for name, got, want in zip(("dq", "dk", "dv", "ds_aux"), grads, ref_grads, strict=True):
        assert_close(got, want, dtype, f"sink {name}", factor=2)


def _varlen_reference(ref_in, cu, causal, window):
    q, k, v, sinks = ref_in
    outs, lses = [], []
    for b in range(cu.numel() - 1):
        s = slice(int(cu[b]), int(cu[b + 1]))
        out, lse = reference.attention(q[None, s], k[None, s], v[None, s], causal=causal, window_size=window,
                                       s_aux=sinks)
        outs.append(out[0])
        lses.append(lse[0])
    return torch.cat(outs), torch.cat(lses, dim=-1)


def test_sinks_forward_backward(device):
    torch.manual_seed(3)
    q = torch.randn(2, 37, 4, 32, dtype=torch.float16, device=device, requires_grad=True)
    k = torch.randn(2, 45, 2, 32, dtype=torch.float16, device=device, requires_grad=True)
    v = torch.randn(2, 45, 2, 32, dtype=torch.float16, device=device, requires_grad=True)
    sinks = (torch.randn(4, device=device) * 2).requires_grad_()
    check_sinks(q, k, v, sinks, dtype=torch.float16, causal=True)   # leading rows: only the sink
    lens = [5, 30]
    cu = torch.tensor([0, 5, 35], dtype=torch.int32, device=device)
    qv, kv, vv = (torch.randn(35, 4, 32, dtype=torch.float16, device=device, requires_grad=True) for _ in range(3))
    check_sinks(qv, kv, vv, sinks, dtype=torch.float16, causal=False, window=(6, 2), cu=cu, max_len=max(lens))


def test_sinks_on_the_cuda_backend_raise_naming_s_aux(device, monkeypatch):
    from fa_kernels import backend

    monkeypatch.setattr(backend, "resolve", lambda name, dev, op="attention": "cuda")
    q = torch.randn(1, 8, 2, 32, dtype=torch.float16, device=device)
    sinks = torch.zeros(2, device=device)
    with pytest.raises(NotImplementedError, match="s_aux"):
        fa_kernels.flash_attn_func(q, q, q, s_aux=sinks)


def test_a_kv_cache_on_the_cuda_backend_raises_naming_it(device, monkeypatch):
    from fa_kernels import backend

    monkeypatch.setattr(backend, "resolve", lambda name, dev, op="attention": "cuda")
    q = torch.randn(1, 1, 2, 32, dtype=torch.float16, device=device)
    cache = torch.zeros(1, 16, 2, 32, dtype=torch.float16, device=device)
    with pytest.raises(NotImplementedError, match="KV cache"):
        fa_kernels.flash_attn_with_kvcache(q, cache, cache, cache_seqlens=4)


# -- GPU: real sizes ---------------------------------------------------------------------------------

GPU_CASES = [
    Case(batch=4, nheads=32, nheads_k=4, head_dim=128, capacity=8192, num_splits=0),
    Case(batch=4, nheads=32, nheads_k=4, head_dim=128, capacity=8192, page_size=256, num_splits=0),
    Case(batch=3, nheads=32, nheads_k=8, head_dim=128, capacity=4096, page_size=16, rotary="half",
         rotary_dim=128, leftpad=True, num_splits=0),
    Case(batch=64, nheads=16, nheads_k=2, head_dim=64, capacity=2048, batch_idx=True, rotary="interleaved",
         rotary_dim=64, num_splits=0),
    Case(batch=2, seqlen_q=300, seqlen_new=300, nheads=16, nheads_k=2, head_dim=128, capacity=4096,
         page_size=64, num_splits=0),
    Case(batch=2, seqlen_q=7, seqlen_new=7, nheads=8, nheads_k=1, head_dim=256, capacity=3000,
         window=(512, 0), softcap=30.0, sink=True, alibi=True, num_splits=0),
    Case(batch=1, nheads=8, nheads_k=8, head_dim=96, capacity=20000, seqlen_new=0, causal=False,
         num_splits=16),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", GPU_CASES, ids=range(len(GPU_CASES)))
def test_gpu_kvcache_real_sizes(case, dtype):
    run_and_compare(case, dtype, "cuda", seed=case.capacity)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_paged_varlen_and_sinks(dtype):
    lens_q, lens_k = [1, 700, 129], [3000, 700, 2000]
    q, kc, vc, cu_q, cu_k, table = paged_varlen_inputs(lens_q, lens_k, 256, 32, 4, 128, dtype, "cuda")
    sinks = torch.randn(32, device="cuda")
    out = fa_kernels.flash_attn_varlen_func(q, kc, vc, cu_q, cu_k, max(lens_q), max(lens_k), causal=True,
                                            block_table=table, s_aux=sinks)
    ref, _ = reference.paged_varlen_attention(q, kc, vc, cu_q, cu_k, table, causal=True, s_aux=sinks)
    assert_close(out, ref, dtype, "paged varlen out")
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 1500, h, 128, dtype=dtype, device="cuda", requires_grad=True)
               for h in (16, 4, 4))
    check_sinks(q, k, v, (torch.randn(16, device="cuda") * 3).requires_grad_(), dtype=dtype, causal=True)
