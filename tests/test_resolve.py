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


# -- stable-ABI wheels: one binary for torch >= its target, CPython >= 3.10 (cp310-abi3) -------------

STABLE = "fa_kernels-0.1.0+cu130torch2.10stableabi-cp310-abi3-manylinux_2_28_x86_64.whl"

STABLE_CASES = [
    # (filename, torch, accepted, reason)
    (STABLE, "2.11.0+cu130", True, "stable-ABI build for torch >= 2.10 with CUDA 13.x (13.0 or newer); this is torch 2.11"),
    (STABLE, "2.10.0+cu130", True, "this is torch 2.10.0"),  # exactly the target
    (STABLE, "2.14.1+cu130", True, "this is torch 2.14.1"),  # a torch newer than any we built on
    (STABLE.replace("torch2.10", "torch2.12"), "2.11.0+cu130", False,
     "stable-ABI build for torch >= 2.12, this torch 2.11.0+cu130 is older than its target"),
    (STABLE.replace("cu130", "cu126"), "2.11.0+cu130", False, "built for CUDA 12.6, torch uses CUDA 13.0 (major differs)"),
    (STABLE.replace("cu130", "cu132"), "2.11.0+cu130", False, "built for CUDA 13.2, newer than torch's CUDA 13.0"),
    (STABLE.replace("cp310-abi3", "cp313-abi3"), "2.11.0+cu130", False, "do not fit this interpreter"),  # 3.12 < 3.13
]


@pytest.mark.parametrize(("filename", "torch", "accepted", "reason"), STABLE_CASES)
def test_stable_abi_wheel_serves_every_torch_from_its_target(filename: str, torch: str, accepted: bool,
                                                             reason: str) -> None:
    env = mutate(H100(), torch__version=torch)
    (verdict,) = resolve.resolve(env, [cand(filename)]).trace
    assert verdict.accepted is accepted
    assert reason in verdict.reason


def test_stable_abi_ignores_the_cxx11_flag_that_torch_specific_wheels_need() -> None:
    env = mutate(H100(), torch__cxx11_abi=False)
    assert resolve.resolve(env, [cand(STABLE)]).choice is not None
    assert resolve.resolve(env, [cand(GOOD)]).choice is None


@pytest.mark.parametrize(("version", "abi", "fits"), [
    ("3.10.14", "cp310", True), ("3.11.9", "cp311", True), ("3.12.3", "cp312", True), ("3.13.1", "cp313", True),
    ("3.13.1", "cp313t", False),  # free-threaded CPython has no limited API
    ("3.9.19", "cp39", False),
])
def test_abi3_tag_fits_every_cpython_from_3_10(version: str, abi: str, fits: bool) -> None:
    env = mutate(H100(), python__version=version, python__abi_tag=abi)
    assert (resolve.resolve(env, [cand(STABLE)]).choice is not None) is fits


def test_stable_abi_beats_the_torch_specific_wheel_of_the_same_release_and_the_trace_says_why() -> None:
    specific = cand(GOOD.replace("linux_x86_64", "manylinux_2_28_x86_64"))
    stable, pure = cand(STABLE), cand("fa_kernels-0.1.0-py3-none-any.whl", ())
    res = resolve.resolve(H100(), [pure, specific, stable])
    assert res.choice == stable
    assert res.lines()[-1] == (f"choose {STABLE}: a stable-ABI wheel is preferred over a torch-specific one of "
                               f"the same release: the same binary keeps working after a torch upgrade "
                               f"(over {specific.filename})")


def test_a_newer_release_beats_an_older_stable_abi_build() -> None:
    """As in HF kernels: the release first, the variant among builds of one release. An old stable-ABI
    build must not downgrade a user who has a newer matching wheel."""
    newer = cand(GOOD.replace("linux_x86_64", "manylinux_2_28_x86_64").replace("0.1.0", "0.1.1"))
    older_stable, newer_target = cand(STABLE), cand(STABLE.replace("torch2.10", "torch2.11"))
    res = resolve.resolve(H100(), [older_stable, newer])
    assert res.choice == newer and res.why.startswith("a newer fa-kernels release")
    newest_stable = cand(STABLE.replace("0.1.0", "0.2.0"))
    assert resolve.resolve(H100(), [newer_target, newest_stable]).choice == newest_stable


def test_newest_target_this_torch_satisfies_wins_among_stable_wheels() -> None:
    older, newer = cand(STABLE), cand(STABLE.replace("torch2.10", "torch2.11"))
    res = resolve.resolve(H100(), [older, newer])
    assert res.choice == newer and "newest stable-ABI target" in res.why
    too_new = cand(STABLE.replace("torch2.10", "torch2.12"))
    assert resolve.resolve(H100(), [older, too_new]).choice == older


def test_torch_older_than_the_target_falls_back_to_a_torch_specific_or_pure_wheel() -> None:
    env = mutate(H100(), torch__version="2.9.1+cu130")
    specific = cand(GOOD.replace("torch2.11", "torch2.9"))
    pure = cand("fa_kernels-0.1.0-py3-none-any.whl", ())
    assert resolve.resolve(env, [cand(STABLE), specific, pure]).choice == specific
    res = resolve.resolve(env, [cand(STABLE), pure])
    assert res.choice == pure and "older than its target" in res.lines()[0]


def test_arch_fit_outranks_the_abi() -> None:
    stable_ptx_only = cand(STABLE, archs=("sm_80",), ptx="sm_80")  # runs on Hopper only through PTX JIT
    specific = cand(GOOD)  # sm_90a SASS
    res = resolve.resolve(H100(), [stable_ptx_only, specific])
    assert res.choice == specific and "exactly this GPU's arch" in res.why
