"""Every bad call raises a Python exception that names the argument; none kills the process (issue #10).

CPU: the public entry points on the Triton (interpreter) and reference backends, in process. GPU: every
case on every backend, plus direct torch.ops.fa_kernels calls, each in a child process so a crash shows
as that case's failure (a signal), not a dead test run. Empty inputs give empty results, not errors.
"""

from __future__ import annotations

import pytest
import torch

import fa_kernels

from . import bad_inputs

PUBLIC = {**bad_inputs.NORM_CASES, **bad_inputs.ATTN_CASES}
CPU_CASES = [n for n, c in PUBLIC.items() if c.needs == "any"]


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("name", CPU_CASES)
def test_bad_call_raises_naming_the_argument(name: str, backend: str) -> None:
    result = bad_inputs.run_one(name, bad_inputs.Ctx(device="cpu", backend=backend))
    assert bad_inputs.verdict(name, result) is None, result


@pytest.mark.integration
def test_isolated_runner_reports_exceptions_from_a_child_process() -> None:
    names = ["norm weight wrong size", "attn head_dim 36", "varlen cu_seqlens decreasing"]
    results = bad_inputs.run_isolated(names, "cpu", "reference")
    assert [bad_inputs.verdict(n, results[n]) for n in names] == [None, None, None]


def _has_ops() -> bool:
    from fa_kernels import backend

    return backend.cuda_extension() is not None


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton", "reference"])
def test_gpu_bad_calls_raise_in_a_child_process(backend: str) -> None:
    names = [n for n, c in PUBLIC.items() if backend != "cuda" or _has_ops()]
    results = bad_inputs.run_isolated(names, "cuda", backend)
    failures = [v for n in names if (v := bad_inputs.verdict(n, results[n]))]
    assert not failures, "\n".join(failures)


@pytest.mark.gpu
@pytest.mark.skipif(not _has_ops(), reason="fa_kernels._C not built")
def test_gpu_direct_torch_ops_calls_raise_in_a_child_process() -> None:
    names = list(bad_inputs.OPS_CASES)
    results = bad_inputs.run_isolated(names, "cuda", "cuda")
    failures = [v for n in names if (v := bad_inputs.verdict(n, results[n]))]
    assert not failures, "\n".join(failures)


# -- empty inputs: empty results (flash_attn's answers), gradients included --------------------

@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("shape", [(0, 64), (2, 0, 64)])
def test_empty_norm_input_gives_empty_output(shape: tuple[int, ...], backend: str, device: str) -> None:
    x = torch.randn(*shape, device=device, dtype=torch.float16, requires_grad=True)
    w = torch.ones(64, device=device, dtype=torch.float32, requires_grad=True)
    y, s = fa_kernels.rms_norm_fn(x, w, None, residual=torch.zeros_like(x), prenorm=True,
                                  residual_in_fp32=True, backend=backend)
    assert y.shape == x.shape and y.dtype == torch.float16 and s.shape == x.shape
    dx, dw = torch.autograd.grad(y.sum(), (x, w))
    assert dx.shape == x.shape and torch.equal(dw, torch.zeros_like(w))


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize(("batch", "seqlen_q", "seqlen_k"), [(0, 8, 8), (1, 0, 8), (2, 5, 0)])
def test_empty_attention_gives_flash_attn_answers(batch: int, seqlen_q: int, seqlen_k: int, backend: str,
                                                  device: str) -> None:
    q = torch.randn(batch, seqlen_q, 4, 64, device=device, dtype=torch.float16, requires_grad=True)
    k = torch.randn(batch, seqlen_k, 2, 64, device=device, dtype=torch.float16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    out, lse, probs = fa_kernels.flash_attn_func(q, k, v, causal=True, return_attn_probs=True, backend=backend)
    assert out.shape == q.shape and out.dtype == q.dtype and lse.shape == (batch, 4, seqlen_q)
    assert probs.shape == (batch, 4, seqlen_q, seqlen_k)
    assert not out.any() and bool((lse == float("inf")).all())
    grads = torch.autograd.grad(out.float().sum(), (q, k, v), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_empty_varlen_batch(backend: str, device: str) -> None:
    q = torch.randn(0, 2, 64, device=device, dtype=torch.float16)
    cu = torch.zeros(3, dtype=torch.int32, device=device)
    out = fa_kernels.flash_attn_varlen_func(q, q, q, cu, cu, 0, 0, backend=backend)
    assert out.shape == (0, 2, 64)
