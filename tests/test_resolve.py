"""The resolver, table-driven over a real H100 snapshot: every accept and every rejection reason."""

from __future__ import annotations

import pytest

from fa_dist.decide import resolve
from fa_dist.model.environment import ImportStatus, TorchInfo
from fa_dist.model.versions import Arch

from .envs import H100, mutate

GOOD = "fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp312-cp312-linux_x86_64.whl"


def cand(filename: str, archs: tuple[str, ...] = ("sm_90a",), ptx: str | None = None) -> resolve.Candidate:
    return resolve.Candidate(filename=filename, location=f"/w/{filename}", sha256=None, archs=archs, ptx=ptx,
                             source="test")


CASES = [
    (GOOD, ("sm_90a",), None, True, "cu130torch2.11cxx11abiTRUE matches torch 2.11.0+cu130"),
    (GOOD.replace("torch2.11", "torch2.14"), ("sm_90a",), None, False, "built for torch 2.14, this is torch 2.11"),
    (GOOD.replace("cu130", "cu128"), ("sm_90a",), None, False, "built for CUDA 12.8, torch uses CUDA 13.0 (major differs)"),
    (GOOD.replace("cu130", "cu131"), ("sm_90a",), None, False, "newer than torch's CUDA 13.0"),
    (GOOD.replace("abitrue", "abifalse"), ("sm_90a",), None, False, "built with cxx11abi=False, torch uses True"),
    (GOOD.replace("cp312-cp312", "cp311-cp311"), ("sm_90a",), None, False, "do not fit this interpreter"),
    (GOOD.replace("linux_x86_64", "linux_aarch64"), ("sm_90a",), None, False, "do not fit this interpreter"),
    # every mismatch is named, not only the first: a cp311 wheel for torch 2.14 says both
    (GOOD.replace("cp312-cp312", "cp311-cp311").replace("torch2.11", "torch2.14"), ("sm_90a",), None, False,
     "(cp312, linux-x86_64); and built for torch 2.14, this is torch 2.11"),
    (GOOD, ("sm_80",), None, False, "built for sm_80, no code for sm_90"),
    (GOOD, ("sm_80",), "sm_80", True, "matches"),  # PTX of an older arch JITs on Hopper
    (GOOD, ("sm_86", "sm_90"), None, True, "matches"),
    (GOOD.replace("cu130", "rocm6.4"), ("gfx942",), None, False, "a ROCm 6.4 build, this torch has no HIP"),
    ("fa_kernels-0.1.0-py3-none-any.whl", (), None, True, "pure-Triton wheel"),
    ("flash_attn-2.8.3-cp312-cp312-linux_x86_64.whl", (), None, False, "a wheel of flash-attn, not fa-kernels"),
    ("fa_kernels.zip", (), None, False, "not a wheel file name"),
]


@pytest.mark.parametrize(("filename", "archs", "ptx", "accepted", "reason"), CASES)
def test_each_candidate_gets_a_verdict_with_its_reason(filename: str, archs: tuple[str, ...], ptx: str | None,
                                                       accepted: bool, reason: str) -> None:
    (verdict,) = resolve.resolve(H100(), [cand(filename, archs, ptx)]).trace
    assert verdict.accepted is accepted
    assert reason in verdict.reason


def test_compiled_beats_pure_and_newer_beats_older() -> None:
    pure = cand("fa_kernels-0.2.0-py3-none-any.whl", ())
    old, new = cand(GOOD), cand(GOOD.replace("0.1.0", "0.1.1"))
    assert resolve.resolve(H100(), [pure, old, new]).choice == new


def test_manylinux_tags_from_the_targets_glibc() -> None:
    manylinux = cand(GOOD.replace("linux_x86_64", "manylinux_2_28_x86_64"))
    assert resolve.resolve(H100(), [manylinux]).choice == manylinux  # glibc 2.39 >= 2.28
    too_new = cand(GOOD.replace("linux_x86_64", "manylinux_2_40_x86_64"))
    assert resolve.resolve(H100(), [too_new]).choice is None


def test_nothing_installs_without_torch_and_the_trace_says_why() -> None:
    env = mutate(H100(), torch=TorchInfo(status=ImportStatus.MISSING, error="No module named 'torch'"))
    res = resolve.resolve(env, [cand(GOOD)])
    assert res.choice is None and "torch does not import" in res.lines()[0]


@pytest.mark.parametrize(("built", "ptx", "gpu", "runs"), [
    (["sm_90a"], None, "sm_90", True), (["sm_90a"], None, "sm_100", False), (["sm_80"], None, "sm_86", True),
    (["sm_86"], None, "sm_80", False), (["sm_80"], "sm_80", "sm_120", True), (["sm_100"], "sm_100", "sm_90", False),
])
def test_arch_coverage(built: list[str], ptx: str | None, gpu: str, runs: bool) -> None:
    assert resolve.arch_covers(built, ptx, Arch.parse(gpu)) is runs
