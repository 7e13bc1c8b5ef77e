"""`fa-dist build`: the pure planner on real snapshots, the wheelhouse, and a real build of the
pure-Triton wheel (the compiled build needs a CUDA torch: see tools/ and the GPU notes)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fa_dist.act import build as build_run
from fa_dist.act import wheelhouse
from fa_dist.decide import build_plan, recipes, stable_abi
from fa_dist.errors import ConfigError, EnvironmentBroken
from fa_dist.model.versions import CudaVersion
from fa_dist.model.wheel import WheelEntry
from fa_dist.pipelines import build as build_pipeline

from .envs import CPU, H100, mutate

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
RECIPES = recipes.load_all(source_root=KERNELS)


def plan_for(env, recipe="auto", arch="native", jobs=None, abi="auto"):  # type: ignore[no-untyped-def]
    chosen = build_plan.choose_recipe(recipe, env, RECIPES)
    build_pipeline.refuse_if_blocked(env, chosen)
    return build_plan.plan(env, chosen, arch_request=arch, jobs_override=jobs, kernel_version="0.1.0",
                           source_digest="abc", abi_request=abi)


def test_h100_native_plan() -> None:
    p = plan_for(H100())
    assert p.recipe.name == "cuda"
    assert p.version == "0.1.0+cu130torch2.10stableabi" and p.abi is stable_abi.Abi.STABLE
    assert p.python_tag == "cp310"  # abi3: one wheel for CPython >= 3.10
    assert [str(a) for a in p.archs.archs] == ["sm_90a"] if p.archs else False
    assert p.build_env["TORCH_CUDA_ARCH_LIST"] == "9.0a"
    assert p.build_env["MAX_JOBS"] == "8" and p.build_env["NVCC_APPEND_FLAGS"] == "--threads 2"
    assert p.build_env["CUDA_HOME"] == "/usr/local/cuda"  # the snapshot's CUDA_HOME


def test_abi_torch_builds_for_exactly_this_torch_and_stable_pins_the_target() -> None:
    p = plan_for(H100(), abi="torch")
    assert p.version == "0.1.0+cu130torch2.11cxx11abiTRUE" and p.abi is stable_abi.Abi.TORCH
    assert p.build_key != plan_for(H100()).build_key  # the two builds never share objects
    stable = build_run.build_config(plan_for(H100()), H100(), Path("/tmp/objects"))
    assert "-DTORCH_TARGET_VERSION=0x020a000000000000" in stable["cxx_flags"]  # type: ignore[operator]
    assert stable["py_limited_api"] == "cp310"
    assert stable["build_info"]["abi"] == "stable" and stable["build_info"]["torch_target"] == "2.10"  # type: ignore[index]
    specific = build_run.build_config(p, H100(), Path("/tmp/objects"))
    assert not any("TORCH_TARGET_VERSION" in f for f in specific["cxx_flags"])  # type: ignore[union-attr]
    assert specific["build_info"]["torch_target"] == ""  # type: ignore[index]


def test_a_torch_older_than_the_stable_abi_cannot_build_the_compiled_recipe() -> None:
    with pytest.raises(EnvironmentBroken, match=r"recipe 'cuda' needs torch >= 2.10, found 2.9.1\+cu130"):
        plan_for(mutate(H100(), torch__version="2.9.1+cu130"), recipe="cuda")


def test_all_archs_for_ci_with_ptx_of_the_newest() -> None:
    p = plan_for(H100(), arch="all")
    assert p.archs and p.archs.torch_arch_list == "8.0;8.6;8.9;9.0;10.0;12.0+PTX"


def test_jobs_override_and_its_validation() -> None:
    assert plan_for(H100(), jobs=3).build_env["MAX_JOBS"] == "3"
    with pytest.raises(ConfigError, match="at least 1"):
        plan_for(H100(), jobs=0)


def test_refuses_before_compiling_when_doctor_knows_it_cannot_work() -> None:
    with pytest.raises(EnvironmentBroken) as err:
        plan_for(mutate(H100(), ninja=None))
    assert "ninja: ninja missing" in err.value.message
    assert err.value.fix is not None and "pip install ninja" in err.value.fix


def test_recipe_minimum_runtime_is_enforced() -> None:
    old_cuda = dataclasses.replace(RECIPES["cuda"], min_runtime=CudaVersion(13, 1))  # newer than the snapshot's
    with pytest.raises(EnvironmentBroken, match=r"needs CUDA >= 13.1, this torch is built for CUDA 13.0") as err:
        build_plan.plan(H100(), old_cuda, arch_request="native", jobs_override=None, kernel_version="0.1.0",
                        source_digest="abc")
    assert err.value.fix is not None and "--recipe triton" in err.value.fix


def test_cpu_torch_gets_the_pure_triton_recipe_and_cannot_build_cuda() -> None:
    assert plan_for(CPU()).recipe.name == "triton"
    assert plan_for(CPU()).version == "0.1.0"
    with pytest.raises(EnvironmentBroken, match="CPU-only build"):
        plan_for(CPU(), recipe="cuda")


def test_unknown_recipe() -> None:
    with pytest.raises(ConfigError, match="no recipe named 'metal'"):
        plan_for(H100(), recipe="metal")


def test_cuda_root_reads_through_a_wrapper_script(tmp_path: Path) -> None:
    toolkit = tmp_path / "cuda-13.0"
    (toolkit / "include").mkdir(parents=True)
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    assert build_plan.cuda_root(str(wrapper), candidates=()) == str(toolkit)
    assert build_plan.cuda_root(str(tmp_path / "nothing" / "bin" / "nvcc"), candidates=()) is None


def _entry(**kw: object) -> WheelEntry:
    base = dict(filename="fa_kernels-0.1.0-py3-none-any.whl", sha256="", size=0, name="fa-kernels",
                version="0.1.0", variant=None, archs=(), python="py3", platform="any", recipe="triton",
                source_digest="abc", built_at="2026-11-22T00:00:00+00:00")
    return WheelEntry(**{**base, **kw})  # type: ignore[arg-type]


def test_reuse_needs_same_sources_and_target() -> None:
    p = plan_for(CPU())
    assert build_plan.reusable(p, [_entry()]) is not None
    assert build_plan.reusable(p, [_entry(source_digest="other")]) is None


def test_wheelhouse_manifest_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    wheel = tmp_path / "fa_kernels-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    entry = wheelhouse.with_hash(_entry(), wheel)
    wheelhouse.add(tmp_path, entry)
    wheelhouse.add(tmp_path, entry)  # same filename: replaced, not duplicated
    assert wheelhouse.read(tmp_path) == [entry]
    assert wheelhouse.verified(tmp_path, entry)
    wheel.write_bytes(b"wheel bytez")
    assert not wheelhouse.verified(tmp_path, entry)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ConfigError, match="is not JSON"):
        wheelhouse.read(tmp_path)


@pytest.mark.integration
def test_real_build_of_the_pure_triton_wheel_then_reuse(tmp_path: Path) -> None:
    def fa_dist(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1", "FA_DIST_CACHE_DIR": str(tmp_path / "cache")}
        return subprocess.run([sys.executable, "-m", "fa_dist", "build", "--recipe", "triton",
                               "--wheelhouse", str(tmp_path / "wh"), "--json", *args],
                              capture_output=True, text=True, env=env, timeout=300)

    first = fa_dist()
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads(first.stdout)
    wheel = Path(result["wheel"])
    assert wheel.name == "fa_kernels-0.1.0-py3-none-any.whl" and wheel.is_file()
    (entry,) = wheelhouse.read(tmp_path / "wh")
    assert entry.sha256 == wheelhouse.sha256_of(wheel) and entry.variant is None
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "fa_kernels/triton/attention_kernels.py" in names and "fa_kernels/norm.py" in names
    again = json.loads(fa_dist().stdout)
    assert again["reused"] == "wheel"
    clean = json.loads(fa_dist("--clean").stdout)
    assert clean["reused"] == ""
