"""backend="auto": shape classes (pure), the committed table, explain(), and the norm backward's one
tensor for dx and dresidual (equal to the reference, and no storage shared between two leaves)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fa_kernels
from fa_kernels import auto, auto_table, backend
from fa_kernels.auto import AttnShape, NormShape

ROOT = Path(__file__).resolve().parents[2]


def test_shape_classes_bucket_at_the_bounds() -> None:
    assert auto.norm_class(NormShape(16384, 4096)) == "hidden<=4k/rows<=32k/p0"
    assert auto.norm_class(NormShape(16384, 4097, dropout=True)) == "hidden<=8k/rows<=32k/dropout"
    assert auto.norm_class(NormShape(32769, 2048)) == "hidden<=2k/rows>32k/p0"
    assert auto.norm_class(NormShape(7, 100)) == "hidden<=1k/rows<=4k/p0"
    assert auto.norm_class(NormShape(4096, 16384)) == "hidden>8k/rows<=4k/p0"
    assert auto.attention_class(AttnShape(1024, 64)) == "hd<=64/seqlen<=1k/full"
    assert auto.attention_class(AttnShape(1025, 96, causal=True)) == "hd<=128/seqlen<=4k/causal"
    assert auto.attention_class(AttnShape(16384, 256)) == "hd>128/seqlen>4k/full"


@given(st.integers(1, 1 << 20), st.integers(1, 1 << 16), st.booleans())
def test_norm_class_is_a_function_of_the_buckets_only(rows: int, hidden: int, dropout: bool) -> None:
    cls = auto.norm_class(NormShape(rows, hidden, dropout))
    # every class is measured, on one or two shapes of its own (a bandwidth-bound bucket at both ends)
    same = [s for s in auto.representatives("norm") if auto.norm_class(s) == cls]  # type: ignore[arg-type]
    assert 1 <= len(same) <= 2


@given(st.integers(1, 1 << 18), st.integers(1, 256), st.booleans())
def test_attention_class_has_one_representative(seqlen: int, head_dim: int, causal: bool) -> None:
    cls = auto.attention_class(AttnShape(seqlen, head_dim, causal))
    assert sum(auto.attention_class(s) == cls for s in auto.representatives("attention")) == 1  # type: ignore[arg-type]


def test_bad_op_direction_or_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="direction='sideways'"):
        auto.key("norm", "sideways", NormShape(1, 1))
    with pytest.raises(ValueError, match="norm takes a NormShape"):
        auto.key("norm", "forward", AttnShape(1, 1))
    with pytest.raises(ValueError, match="op='conv'"):
        auto.representatives("conv")


def _sweep_module():  # benchmarks/ is not a package: load sweep_auto.py by path (it imports common)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("sweep_auto", ROOT / "benchmarks" / "sweep_auto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_table_is_what_the_sweep_writes() -> None:
    text = (ROOT / "kernels" / "fa_kernels" / "auto_table.py").read_text()
    assert _sweep_module().render_module(auto_table) == text


def test_every_table_key_is_a_class_the_sweep_measures_and_every_choice_a_backend() -> None:
    measurable = {auto.key(op, d, s) for op in auto.OPS for s in auto.representatives(op) for d in auto.DIRECTIONS}
    for arch, entries in auto_table.TABLE.items():
        assert arch in auto_table.SOURCES and set(entries) == set(auto_table.EVIDENCE[arch])
        assert set(entries) <= measurable
        assert set(entries.values()) <= set(auto.CHOICES)
    assert set(auto_table.DEFAULT) == set(auto.OPS)


def test_choose_reads_the_table_and_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = NormShape(16384, 4096)
    k = auto.key("norm", "backward", shape)
    monkeypatch.setattr(auto_table, "TABLE", {"sm_90": {k: "cuda"}})
    monkeypatch.setattr(auto_table, "SOURCES", {"sm_90": "a test run"})
    auto.choose.cache_clear()
    try:
        assert auto.choose("norm", "backward", shape, "sm_90") == ("cuda", f"sm_90 table (a test run): {k}")
        backend_, why = auto.choose("norm", "forward", shape, "sm_90")
        assert backend_ == auto_table.DEFAULT["norm"] and "not measured on sm_90" in why
        backend_, why = auto.choose("norm", "backward", shape, "sm_120")
        assert backend_ == auto_table.DEFAULT["norm"] and why.startswith("sm_120 not measured")
    finally:
        auto.choose.cache_clear()


def test_explain_on_a_gpu_checks_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device is only asked for its arch; the table and the build decide."""
    shape = NormShape(16384, 4096)
    monkeypatch.setattr(backend, "device_arch", lambda index: "sm_90")
    monkeypatch.setattr(auto, "choose", lambda *a: ("cuda", "sm_90 table (x): k"))
    monkeypatch.setattr(backend, "_built", lambda op: True)
    assert backend.explain("norm", "backward", shape, "cuda:0") == ("cuda", "sm_90 table (x): k")
    assert backend.resolve("auto", torch.device("cuda:0"), "norm", shape=shape, direction="backward") == "cuda"
    monkeypatch.setattr(backend, "_built", lambda op: False)
    chosen, why = backend.explain("norm", "backward", shape, "cuda:0")
    assert chosen == "triton" and why == "sm_90 table (x): k; the cuda backend is not in this build"


def test_explain_off_gpu_names_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    chosen, why = backend.explain("attention", "forward", AttnShape(128, 64), "cpu")
    assert (chosen, why) == ("triton", "tensors on cpu: the Triton CPU interpreter (TRITON_INTERPRET=1)")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert backend.explain("norm", "forward", NormShape(8, 64), "cpu") == ("reference", "tensors on cpu: plain PyTorch")


# -- the norm backward's dx / dresidual -------------------------------------------------------------

def _backends() -> list[str]:
    """triton everywhere (the CPU interpreter here); cuda on a GPU with the compiled extension."""
    gpu_cuda = torch.cuda.is_available() and backend.cuda_extension() is not None
    return ["triton", "cuda"] if gpu_cuda else ["triton"]


def _norm_loss(x: torch.Tensor, r: torch.Tensor, w: torch.Tensor, name: str, p: float = 0.0) -> torch.Tensor:
    y, s = fa_kernels.rms_norm_fn(x, w, None, residual=r, prenorm=True, dropout_p=p, backend=name)
    ramp = torch.linspace(-1, 1, s.shape[-1], device=s.device)
    return (y.float() * 1.5).sum() + (s.float() * ramp).sum()


def _leaves(shape: tuple[int, ...], device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, r = (torch.randn(shape, dtype=torch.float16, device=device, requires_grad=True) for _ in range(2))
    return x, r, torch.ones(shape[-1], dtype=torch.float16, device=device, requires_grad=True)


@pytest.mark.parametrize("name", _backends())
@pytest.mark.parametrize("shape", [(8, 64), (2, 4, 64)])
def test_dx_and_dresidual_are_one_tensor_but_two_leaves_own_their_grad(shape: tuple[int, ...], name: str,
                                                                       device: str) -> None:
    torch.manual_seed(0)
    x, r, w = _leaves(shape, device)
    dx, dr = torch.autograd.grad(_norm_loss(x, r, w, name), (x, r))
    assert dx.data_ptr() == dr.data_ptr()  # written once: the kernel stores one tensor for both
    _norm_loss(x, r, w, name).backward()
    assert x.grad is not None and r.grad is not None
    assert x.grad.data_ptr() != r.grad.data_ptr()
    torch.testing.assert_close(r.grad, dr)
    _norm_loss(x, r, w, name).backward()  # gradient accumulation: each leaf's own grad doubles, no more
    torch.testing.assert_close(r.grad.float(), 2 * dr.float(), rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(x.grad.float(), 2 * dx.float(), rtol=2e-3, atol=2e-3)
    x.grad.zero_()
    torch.testing.assert_close(r.grad.float(), 2 * dr.float(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", _backends())
def test_a_tensor_feeding_both_x_and_residual_gets_the_sum(name: str, device: str) -> None:
    """The one tensor reaches the same producer twice: autograd must add it, not double it in place."""
    torch.manual_seed(1)
    h, _, w = _leaves((8, 64), device)
    (dh,) = torch.autograd.grad(_norm_loss(h * 2, h * 3, w, name), (h,))
    x, r = (t.detach().requires_grad_() for t in (h * 2, h * 3))
    dx, dr = torch.autograd.grad(_norm_loss(x, r, w, name), (x, r))
    torch.testing.assert_close(dh.float(), (2 * dx + 3 * dr).float(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", _backends())
def test_with_dropout_dresidual_is_written_apart(name: str, device: str) -> None:
    torch.manual_seed(2)
    x, r, w = _leaves((8, 64), device)
    dx, dr = torch.autograd.grad(_norm_loss(x, r, w, name, p=0.5), (x, r))
    assert dx.data_ptr() != dr.data_ptr() and not torch.equal(dx, dr)


def test_a_class_measured_on_several_shapes_goes_to_the_backend_ahead_relative_to_each_shape() -> None:
    choose = _sweep_module().choose
    # triton is 2x behind on the small shape and 1.1x ahead on the large one: each shape weighs the same
    assert choose([{"triton": 2.0, "cuda": 1.0}, {"triton": 10.0, "cuda": 11.0}]) == "cuda"
    # a backend that failed on one shape is not chosen on the others' evidence
    assert choose([{"triton": 5.0}, {"triton": 5.0, "cuda": 1.0}]) == "triton"
    assert choose([{"cuda": 1.0}, {"triton": 1.0}]) is None
    assert choose([]) is None


def test_a_choice_is_made_on_device_time() -> None:
    """sweep_auto weighs the GPU's share (benchmarks/timing.Timing.device_ms): the forward's graph
    replay, the backward's kernel durations; the plain median only where neither was measured."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as sweep_auto.py finds it
    try:
        timing = importlib.import_module("timing")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert timing.Timing(0.40, graph_ms=0.13).device_ms == 0.13
    assert timing.Timing(0.40, None, "", kernel_ms=0.17).device_ms == 0.17
    assert timing.Timing(0.40).device_ms == 0.40
    assert timing.Timing(None).device_ms is None
