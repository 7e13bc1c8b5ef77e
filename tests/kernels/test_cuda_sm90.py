"""The Hopper (sm_90a) attention forward of the compiled backend (csrc/attention/flash_fwd_sm90.cu).

GPU only, and only on compute capability 9.0 with a build that has the attention ops: the sm90 path
(FA_KERNELS_SM90 unset: "pingpong", the two consumer warpgroups taking turns on the tensor cores;
"overlapped": both warpgroups at once; "serial": one step at a time) against the float32 reference and against the sm_80
kernel (FA_KERNELS_SM90=0) in the same process; which kernel ran is read off the profiler's kernel names.
"""

from __future__ import annotations

import math

import pytest
import torch

import fa_kernels
from fa_kernels import reference

from .helpers import TOL, assert_close, rel_err
from .test_attention import check, make_qkv, needs_cuda_attention

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)

pytestmark = [
    pytest.mark.gpu,
    needs_cuda_attention,
    pytest.mark.skipif(not HOPPER, reason="needs a compute capability 9.0 GPU (H100/H200)"),
]

SM90_KERNEL, SM80_KERNEL = "flash_fwd_sm90_kernel", "flash_fwd_kernel"


SCHEDULES = ("overlapped", "serial", "pingpong")


@pytest.fixture
def sm90(monkeypatch: pytest.MonkeyPatch):
    """Sets the path: sm90("pingpong") the default, sm90("overlapped"), sm90("serial"), sm90("off") the
    sm_80 kernel."""
    def use(mode: str) -> None:
        if mode == "pingpong":
            monkeypatch.delenv("FA_KERNELS_SM90", raising=False)
        else:
            monkeypatch.setenv("FA_KERNELS_SM90", {"serial": "serial", "overlapped": "overlapped", "off": "0"}[mode])
    return use


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = torch.ops.fa_kernels.flash_fwd(q, k, v, scale, causal)
    torch.cuda.synchronize()
    return out, lse


def fwd_kernels(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> set[str]:
    """Names of the flash_fwd kernels one forward call launched."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        forward(q, k, v, 0.125, False)
    names = {e.name for e in prof.events() if "flash_fwd" in e.name}
    return {SM90_KERNEL if SM90_KERNEL in n else SM80_KERNEL for n in names}


def test_the_switch_picks_the_kernel_that_runs(sm90):
    q, k, v = (t.detach() for t in make_qkv(1, 256, 256, 4, 4, 128, torch.bfloat16, "cuda"))
    sm90("overlapped")
    assert fwd_kernels(q, k, v) == {SM90_KERNEL}
    sm90("off")
    assert fwd_kernels(q, k, v) == {SM80_KERNEL}
    sm90("serial")  # read on every call, not cached: back again in the same process
    assert fwd_kernels(q, k, v) == {SM90_KERNEL}
    sm90("pingpong")
    assert fwd_kernels(q, k, v) == {SM90_KERNEL}


SHAPES = [
    # b, sq, sk, h, hk
    (1, 1, 1, 8, 2),
    (2, 113, 203, 8, 2),     # odd lengths, sk > sq, GQA 8:2
    (1, 113, 203, 8, 1),     # MQA
    (2, 1024, 1024, 8, 2),
    (1, 4096, 4096, 8, 1),
    (1, 2048, 1, 8, 2),      # one key: causal leaves all but the last query without a key
    (1, 1, 2048, 8, 1),      # one query over every key
    (2, 300, 300, 4, 4),     # plain MHA, a partial second query tile
]


def _reference(q, k, v, scale, causal):
    out, lse = reference.attention(q.float(), k.float(), v.float(), softmax_scale=scale, causal=causal)
    return out, lse


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk"), SHAPES)
def test_forward_matches_reference_and_the_sm80_kernel(b, sq, sk, h, hk, d, causal, dtype, sm90):
    torch.manual_seed(sq * 7 + sk + d)
    q, k, v = (t.detach() for t in make_qkv(b, sq, sk, h, hk, d, dtype, "cuda"))
    scale = 1.0 / math.sqrt(d)
    sm90("off")
    old_out, old_lse = forward(q, k, v, scale, causal)
    ref, ref_lse = _reference(q, k, v, scale, causal)
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(old_lse), finite)
    results = {}
    for schedule in SCHEDULES:
        sm90(schedule)
        out, lse = results[schedule] = forward(q, k, v, scale, causal)
        assert_close(out, ref, dtype, f"{schedule}: out vs reference")
        assert torch.equal(torch.isfinite(lse), finite), f"{schedule}: rows with no visible key must have lse=+inf"
        assert torch.all(out[~finite.transpose(1, 2)] == 0), f"{schedule}: rows with no visible key must be 0"
        assert_close(lse[finite], ref_lse[finite], torch.float32, f"{schedule}: lse vs reference", factor=100)
        assert rel_err(out, old_out) < TOL[dtype], f"{schedule}: out differs from the sm_80 kernel's"
        assert_close(lse[finite], old_lse[finite], torch.float32, f"{schedule}: lse vs sm_80 kernel", factor=100)
    # the same products in the same order: the two schedules agree bit for bit (the ping-pong's softmax
    # rounds differently: one FFMA for scale and max)
    assert torch.equal(results["overlapped"][0], results["serial"][0])


@pytest.mark.parametrize("schedule", ["overlapped", "pingpong"])
def test_strided_q_from_packed_qkv_gives_the_contiguous_result(schedule, sm90):
    sm90(schedule)
    qkv = torch.randn(2, 700, 3, 8, 128, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv.unbind(2)  # strided views: TMA reads them through their real strides
    out, lse = forward(q, k, v, 0.1, True)
    cout, clse = forward(q.contiguous(), k.contiguous(), v.contiguous(), 0.1, True)
    assert torch.equal(out, cout) and torch.equal(lse, clse)
    ref, _ = _reference(q, k, v, 0.1, True)
    assert_close(out, ref, torch.bfloat16, "strided out vs reference")


@pytest.mark.parametrize("schedule", ["overlapped", "pingpong"])
def test_forward_is_deterministic(schedule, sm90):
    sm90(schedule)
    q, k, v = (t.detach() for t in make_qkv(2, 1500, 1700, 8, 2, 128, torch.float16, "cuda"))
    first = forward(q, k, v, 0.08, True)
    second = forward(q, k, v, 0.08, True)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize(("b", "sq", "sk", "h", "hk", "d", "causal", "dtype"), [
    (2, 1024, 1024, 8, 2, 128, True, torch.bfloat16),
    (1, 777, 1333, 8, 1, 64, True, torch.float16),    # odd, sk > sq, MQA
    (2, 2048, 2048, 4, 4, 64, False, torch.bfloat16),
    (1, 1500, 900, 4, 2, 128, True, torch.float16),   # sq > sk: leading rows see no key
])
@pytest.mark.parametrize("schedule", ["overlapped", "pingpong"])
def test_backward_from_the_sm90_forward_matches_reference(b, sq, sk, h, hk, d, causal, dtype, schedule, sm90):
    sm90(schedule)
    torch.manual_seed(sq + sk)
    q, k, v = make_qkv(b, sq, sk, h, hk, d, dtype, "cuda")
    check(q, k, v, dtype=dtype, causal=causal, scale=1.0 / math.sqrt(d), backend="cuda")


@pytest.mark.parametrize("schedule", ["overlapped", "pingpong"])
def test_a_cuda_graph_replays_the_sm90_forward(schedule, sm90):
    sm90(schedule)
    q, k, v = (t.detach() for t in make_qkv(2, 512, 512, 8, 2, 128, torch.bfloat16, "cuda"))
    expected = fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda")  # warm up on the side stream
        with torch.cuda.graph(graph, stream=stream):
            out = fa_kernels.flash_attn_func(q, k, v, causal=True, backend="cuda")
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("scale", [-0.1, 0.0])
def test_pingpong_with_a_scale_that_is_not_positive_runs_the_overlapped_schedule(scale, sm90):
    """The ping-pong's softmax takes the max of unscaled scores, right only for a positive scale; any other
    scale runs the overlapped schedule instead (still the sm90 kernel, same result bit for bit)."""
    q, k, v = (t.detach() for t in make_qkv(1, 300, 300, 4, 2, 128, torch.bfloat16, "cuda"))
    sm90("overlapped")
    expected = forward(q, k, v, scale, True)
    sm90("pingpong")
    out, lse = forward(q, k, v, scale, True)
    assert torch.equal(out, expected[0]) and torch.equal(lse, expected[1])
    ref, _ = _reference(q, k, v, scale, True)
    assert_close(out, ref, torch.bfloat16, f"scale {scale}: out vs reference")


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize(("sq", "sk", "causal"), [
    (128, 128, False),    # one key tile: two turns a warpgroup
    (256, 129, False),    # two tiles, the second holding one key
    (1500, 700, True),    # sq > sk: CTAs with no key tile take no turn (no seed either)
    (4000, 4000, True),   # causal: both warpgroups of a CTA walk the CTA's tiles, the diagonal masked
])
def test_pingpong_turn_counts_at_the_edges(sq, sk, causal, d, sm90):
    """Shapes that decide how many turns each warpgroup takes; a broken count hangs (the GPU script runs
    these under a timeout first)."""
    torch.manual_seed(sq + sk + d)
    q, k, v = (t.detach() for t in make_qkv(2, sq, sk, 4, 2, d, torch.float16, "cuda"))
    sm90("pingpong")
    out, lse = forward(q, k, v, 1.0 / math.sqrt(d), causal)
    ref, ref_lse = _reference(q, k, v, 1.0 / math.sqrt(d), causal)
    finite = torch.isfinite(ref_lse)
    assert_close(out, ref, torch.float16, "pingpong out vs reference")
    assert torch.equal(torch.isfinite(lse), finite)
    assert_close(lse[finite], ref_lse[finite], torch.float32, "pingpong lse vs reference", factor=100)
