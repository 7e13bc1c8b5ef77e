"""Pure pieces of the build: variant tags, recipes, arch selection, build-log classification."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fa_dist.decide import archs, buildlog, recipes, stable_abi
from fa_dist.decide.build_plan import for_environment, source_digest, stale
from fa_dist.decide.stable_abi import Abi
from fa_dist.errors import ConfigError, ParseError
from fa_dist.model.variant import Runtime, Variant
from fa_dist.model.versions import Arch, CudaVersion, TorchMinor

from .envs import CPU, FIXTURES, H100, load

variants = st.builds(
    Variant,
    st.sampled_from(list(Runtime)),
    st.builds(CudaVersion, st.integers(10, 20), st.integers(0, 9)),
    st.builds(TorchMinor, st.integers(1, 3), st.integers(0, 30)),
    st.booleans(),
    stable_abi=st.booleans(),
)


@given(variants)
def test_variant_round_trips(v: Variant) -> None:
    assert Variant.parse(str(v)) == v
    assert Variant.from_local_version(f"0.1.0+{v}") == v


def test_variant_text_forms() -> None:
    v = Variant.parse("cu130torch2.11cxx11abiTRUE")
    assert (v.runtime, v.runtime_version, str(v.torch), v.cxx11_abi) == (
        Runtime.CUDA, CudaVersion(13, 0), "2.11", True)
    assert str(Variant.parse("rocm6.4torch2.11cxx11abiFALSE")) == "rocm6.4torch2.11cxx11abiFALSE"
    assert Variant.from_local_version("0.1.0") is None
    # as pip normalises it in wheel names and installed versions
    assert Variant.parse("cu130torch2.14cxx11abitrue") == Variant.parse("cu130torch2.14cxx11abiTRUE")
    with pytest.raises(ParseError, match="not a build variant"):
        Variant.parse("cu130torch2.11")
    stable = Variant.parse("cu130torch2.10stableabi")
    assert stable.stable_abi and str(stable) == "cu130torch2.10stableabi"
    assert stable.serves(TorchMinor(2, 14)) and not stable.serves(TorchMinor(2, 9))
    assert not Variant.parse("cu130torch2.10cxx11abiTRUE").serves(TorchMinor(2, 11))


@pytest.mark.parametrize(("request_", "torch", "target", "abi", "why"), [
    ("auto", "2.11", "2.10", Abi.STABLE, "one wheel for torch >= 2.10"),
    ("auto", "2.9", "2.10", Abi.TORCH, "torch 2.9 is older than the stable-ABI target 2.10"),
    ("auto", "2.11", None, Abi.TORCH, "no stable-ABI build"),
    ("torch", "2.11", "2.10", Abi.TORCH, "a wheel for torch 2.11 only"),
    ("stable", "2.10", "2.10", Abi.STABLE, "TORCH_TARGET_VERSION 2.10"),
])
def test_abi_choice(request_: str, torch: str, target: str | None, abi: Abi, why: str) -> None:
    got, reason = stable_abi.choose(request_, torch=TorchMinor.parse(torch),
                                    target=TorchMinor.parse(target) if target else None)
    assert got is abi and why in reason


@pytest.mark.parametrize(("torch", "target", "message"), [
    ("2.9", "2.10", "targets torch >= 2.10, this is torch 2.9"), ("2.11", None, "no stable-ABI target"),
])
def test_abi_stable_refused_where_it_cannot_load(torch: str, target: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        stable_abi.choose("stable", torch=TorchMinor.parse(torch),
                          target=TorchMinor.parse(target) if target else None)
    assert err.value.fix and "--abi torch" in err.value.fix


def test_target_flag_is_torch_version_h_layout() -> None:
    assert stable_abi.target_flag(TorchMinor(2, 10)) == "-DTORCH_TARGET_VERSION=0x020a000000000000"


def test_variant_for_real_environments() -> None:
    assert str(for_environment(H100())[0]) == "cu130torch2.11cxx11abiTRUE"
    none, why = for_environment(CPU())
    assert none is None and "CPU-only build" in why
    assert for_environment(load("cpu-no-torch"))[0] is None


# -- recipes -----------------------------------------------------------------------------------

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def test_committed_recipes_load_and_name_existing_sources() -> None:
    found = recipes.load_all(source_root=KERNELS)
    assert found["triton"].kind is recipes.Kind.TRITON and not found["triton"].compiled
    for recipe in found.values():
        if recipe.compiled:
            assert recipe.extension and recipe.extension.sources
            assert all((KERNELS / s).is_file() for s in recipe.extension.sources)


GOOD = """
[recipe]
name = "cuda"
kind = "cuda"
description = "x"
min_torch = "2.4"
min_runtime = "12.0"
[extension]
name = "fa_kernels._C"
sources = ["a.cu"]
[archs]
supported = ["sm_80", "sm_90"]
"""


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace('kind = "cuda"', 'kind = "opencl"'), "recipe.kind = 'opencl': expected one of"),
    (GOOD.replace('min_torch = "2.4"', 'min_torch = "two"'), "recipe.min_torch: not a torch version"),
    (GOOD + "\n[extra]\nx = 1\n", "unknown table [extra]"),
    (GOOD.replace('sources = ["a.cu"]', 'sources = ["a.cu"]\nsrcs = []'), "unknown key extension.srcs"),
    (GOOD.replace('sources = ["a.cu"]', "sources = [1]"), "extension.sources[0] must be a string"),
    (GOOD.replace('"sm_80", "sm_90"', '"sm_80", "gfx942"'), "must list only sm_XX archs"),
    (GOOD.replace('"sm_80", "sm_90"', '"sm_80", "volta"'), "archs.supported[1]: not a GPU arch"),
    (GOOD.replace('description = "x"\n', ""), "missing key recipe.description"),
    (GOOD.replace("[archs]\nsupported = [\"sm_80\", \"sm_90\"]\n", ""), "[archs] is required"),
    ("[recipe\n", "not valid TOML"),
])
def test_bad_recipes_name_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        recipes.load(path)
    assert str(path) in err.value.message and message in err.value.message


def test_recipe_sources_must_exist_when_checked(tmp_path: Path) -> None:
    path = tmp_path / "cuda.toml"
    path.write_text(GOOD)
    assert recipes.load(path).archs == (Arch.parse("sm_80"), Arch.parse("sm_90"))
    with pytest.raises(ConfigError, match=r"names 'a\.cu', which is not in"):
        recipes.load(path, source_root=tmp_path)


# -- archs -------------------------------------------------------------------------------------

RECIPE_ARCHS = [Arch.parse(a) for a in ("sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120")]


def test_native_build_is_exactly_the_visible_gpu_with_hopper_features() -> None:
    choice = archs.select("native", gpus=[Arch.parse("sm_90")], toolkit=CudaVersion(13, 0),
                          recipe_archs=RECIPE_ARCHS)
    assert [str(a) for a in choice.archs] == ["sm_90a"] and choice.torch_arch_list == "9.0a"


def test_all_archs_skips_what_the_toolkit_cannot_build_and_adds_ptx() -> None:
    choice = archs.select("all", gpus=[], toolkit=CudaVersion(12, 4), recipe_archs=RECIPE_ARCHS)
    assert [str(a) for a in choice.archs] == ["sm_80", "sm_86", "sm_89", "sm_90"]
    assert choice.torch_arch_list == "8.0;8.6;8.9;9.0+PTX"
    assert any("sm_100" in n and "nvcc 12.4 cannot target" in n for n in choice.notes)


@pytest.mark.parametrize(("request_", "message"), [
    ("sm_70", "not one the kernels are written for"),
    ("sm_120", "nvcc 12.4 cannot target sm_120"),
    ("banana", "not a GPU arch"),
    ("", "--arch is empty"),
])
def test_explicit_arch_list_is_checked(request_: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        archs.select(request_, gpus=[], toolkit=CudaVersion(12, 4), recipe_archs=RECIPE_ARCHS)


def test_native_without_gpu_asks_for_an_explicit_arch() -> None:
    with pytest.raises(ConfigError, match="no GPU visible"):
        archs.select("native", gpus=[], toolkit=CudaVersion(13, 0), recipe_archs=RECIPE_ARCHS)


# -- build logs --------------------------------------------------------------------------------

LOGS = FIXTURES / "buildlogs"


@pytest.mark.parametrize(("log", "cause", "shown"), [
    ("gcc-too-new.log", "gcc-too-new", "gcc versions later than 15"),
    ("cuda-major-mismatch.log", "cuda-mismatch", "(12.8) mismatches"),
    ("oom-killed.log", "oom-killed", "Killed"),
    ("ninja-missing.log", "ninja-missing", "Ninja is required"),
    ("nvcc-unsupported-arch.log", "unsupported-arch", "sm_70"),
    ("missing-header.log", "missing-header", "fa_no_such_header.h"),
    ("cxx-standard-too-old.log", "cxx-standard", "C++20 or later"),
])
def test_real_failure_logs_are_classified(log: str, cause: str, shown: str) -> None:
    found = buildlog.classify((LOGS / log).read_text())
    assert found is not None and found.id == cause
    assert any(shown in line for line in found.lines)


def test_unknown_failure_falls_back_to_the_tail() -> None:
    assert buildlog.classify("error: something new\n") is None
    assert buildlog.tail("a\nb\nc\n", 2) == ("b", "c")


def test_missing_cuda_library_header_names_the_library() -> None:
    log = "ATen/cuda/CUDAContextLight.h:10:10: fatal error: cusparse.h: No such file or directory\n"
    found = buildlog.classify(log)
    assert found is not None and found.fix.startswith("cusparse.h belongs to a CUDA math library")


def test_a_wheel_is_stale_only_when_both_digests_are_known_and_differ() -> None:
    assert stale("aaaa", "aaaa") is None
    assert stale("", "aaaa") is None  # a manifest from before digests were recorded
    assert stale("aaaa", None) is None  # this fa-dist carries no sources to compare with
    why = stale("aaaa", "bbbb")
    assert why is not None and "aaaa" in why and "bbbb" in why and "--find-links" in why


def test_the_source_digest_skips_outputs_caches_and_sdist_metadata(tmp_path: Path) -> None:
    (tmp_path / "fa_kernels").mkdir()
    (tmp_path / "fa_kernels" / "k.py").write_text("x = 1\n")
    before = source_digest(tmp_path)
    for rel in ("PKG-INFO", "setup.cfg", "fa_kernels/_precompiled/e.json", "fa_kernels/__pycache__/k.pyc",
                "build/x.o", ".ruff_cache/c", "fa_kernels.egg-info/SOURCES.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("noise")
    assert source_digest(tmp_path) == before
    (tmp_path / "fa_kernels" / "k.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before
