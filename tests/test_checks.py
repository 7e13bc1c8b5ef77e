"""Doctor's checks, fed real snapshots and one-change-broken variants of them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fa_dist.decide import checks
from fa_dist.decide.checks import Route, Severity
from fa_dist.model.environment import (
    Environment,
    Gpu,
    ImportStatus,
    PackageInfo,
    Rocm,
    Tool,
    TorchInfo,
)
from fa_dist.model.versions import Arch, CudaVersion

from .envs import CPU, H100, load, mutate, with_env_vars


def findings(env: Environment, check_id: str) -> list[checks.Finding]:
    return [f for f in checks.run_checks(env) if f.id == check_id]


def the(env: Environment, check_id: str) -> checks.Finding:
    (found,) = findings(env, check_id)
    return found


@pytest.mark.parametrize("snapshot", ["h100-torch2.11-cu130", "h200-torch2.11-cu130"])
def test_real_gpu_machines_are_ready_to_build_from_source(snapshot: str) -> None:
    env = load(snapshot)
    assert [str(g.arch) for g in env.visible_gpus] == ["sm_90"]
    assert checks.verdict(checks.run_checks(env)).summary == (
        "ready to build from source (and for prebuilt wheels)")


def test_real_h100_is_ready_to_build_from_source() -> None:
    env = H100()
    result = checks.run_checks(env)
    verdict = checks.verdict(result)
    assert verdict.summary == "ready to build from source (and for prebuilt wheels)"
    assert verdict.exit_code == 0
    assert not [f for f in result if f.severity in (Severity.ERROR, Severity.WARNING)]
    assert the(env, "gpu-arch").evidence == "GPU 0: NVIDIA H100 80GB HBM3 is sm_90"


def test_real_cpu_box_says_no_gpu_but_toolchain_ok() -> None:
    result = checks.run_checks(CPU())
    assert {f.id for f in result if f.severity is Severity.WARNING} == {"gpu-visible"}
    assert checks.verdict(result).exit_code == 0
    assert checks.verdict(result, strict=True).exit_code == 3


def test_no_torch_is_an_error_that_blocks_everything() -> None:
    f = the(load("cpu-no-torch"), "torch-import")
    assert f.severity is Severity.ERROR and f.blocks == checks.BOTH
    assert "-m pip install torch --index-url https://download.pytorch.org/whl/cpu" in (f.fix or "")


BROKEN_TORCH = {
    "ImportError: libcudart.so.13: cannot open shared object file: No such file or directory": "missing-cuda-lib",
    "ImportError: /x/libtorch_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi": "undefined-symbol",
    "ImportError: /lib64/libstdc++.so.6: version `GLIBCXX_3.4.32' not found": "glibc",
    "killed by signal 11 (a crash in native code)": "crash",
}


@pytest.mark.parametrize(("error", "kind"), BROKEN_TORCH.items())
def test_broken_torch_import_is_classified(error: str, kind: str) -> None:
    env = mutate(H100(), torch=TorchInfo(status=ImportStatus.BROKEN, error=error))
    f = the(env, "torch-import")
    assert f.severity is Severity.ERROR
    assert f.title == f"torch fails to import ({kind})"
    assert "--force-reinstall torch --index-url https://download.pytorch.org/whl/cu130" in (f.fix or "")


def test_cpu_only_torch_on_gpu_machine_points_at_the_driver_matching_index() -> None:
    env = mutate(H100(), torch__cuda=None, torch__version="2.11.0+cpu", torch__devices=())
    f = the(env, "torch-cpu-only")
    assert f.severity is Severity.ERROR
    assert f.fix is not None and f.fix.endswith(
        "install --force-reinstall torch==2.11.0 --index-url https://download.pytorch.org/whl/cu130")


@pytest.mark.parametrize(("driver_cuda", "driver_version", "severity"), [
    (CudaVersion(12, 8), "570.26", Severity.ERROR),       # CUDA 13 torch, CUDA 12 driver
    (None, "550.54.14", Severity.ERROR),                  # no CUDA version read: use the floor
    (CudaVersion(13, 0), "580.65.06", Severity.OK),
])
def test_driver_against_torch_cuda(driver_cuda: CudaVersion | None, driver_version: str,
                                   severity: Severity) -> None:
    env = mutate(H100(), driver__cuda=driver_cuda, driver__version=driver_version)
    f = the(env, "driver")
    assert f.severity is severity
    if severity is Severity.ERROR:
        assert "580.65.06" in (f.fix or "") and f.blocks == checks.BOTH


def test_driver_older_minor_is_a_warning_about_ptx() -> None:
    env = mutate(H100(), torch__cuda=CudaVersion(13, 2))
    f = the(env, "driver")
    assert f.severity is Severity.WARNING and "PTX" in f.why


def test_cuda_visible_devices_empty_hides_gpus() -> None:
    env = with_env_vars(mutate(H100(), torch__devices=(), torch__cuda_available=False),
                        CUDA_VISIBLE_DEVICES="")
    f = the(env, "gpu-visible")
    assert f.severity is Severity.ERROR
    assert f.fix is not None and f.fix.startswith("unset CUDA_VISIBLE_DEVICES")
    assert "the driver sees 1 GPU(s)" in f.evidence


def test_torch_sees_no_gpu_for_another_reason_shows_torch_error() -> None:
    env = mutate(H100(), torch__devices=(), torch__cuda_available=False,
                 torch__cuda_error="CUDA driver initialization failed")
    f = the(env, "gpu-visible")
    assert "CUDA driver initialization failed" in f.evidence and f.severity is Severity.ERROR


@pytest.mark.parametrize(("arch", "severity", "blocks"), [
    ("sm_70", Severity.ERROR, checks.BOTH),
    ("sm_75", Severity.WARNING, checks.BOTH),
    ("sm_80", Severity.OK, frozenset()),
])
def test_gpu_arch_floor(arch: str, severity: Severity, blocks: frozenset[Route]) -> None:
    gpu = Gpu(index=0, name="test GPU", arch=Arch.parse(arch), memory_mib=16000)
    f = the(mutate(H100(), torch__devices=(gpu,)), "gpu-arch")
    assert (f.severity, f.blocks) == (severity, blocks)


def test_torch_without_kernels_for_the_gpu() -> None:
    gpu = Gpu(index=0, name="B200", arch=Arch.parse("sm_100"), memory_mib=180000)
    env = mutate(H100(), torch__devices=(gpu,), torch__arch_list=("sm_80", "sm_90"))
    assert the(env, "torch-arch-list").severity is Severity.ERROR


@pytest.mark.parametrize(("arch", "arch_list", "runs"), [
    ("sm_86", ["sm_80"], True),                 # same major, lower minor SASS
    ("sm_90", ["sm_80", "compute_80"], True),   # PTX JIT
    ("sm_90", ["sm_80", "sm_86"], False),
    ("sm_90", ["sm_90a"], False),               # arch-specific SASS runs only on exactly sm_90
    ("sm_120", ["sm_100"], False),
])
def test_torch_runs_on(arch: str, arch_list: list[str], runs: bool) -> None:
    assert checks.torch_runs_on(Arch.parse(arch), arch_list) is runs


def test_nvcc_missing_blocks_only_source_builds() -> None:
    env = mutate(H100(), nvcc=None, unknown={"nvcc": "no nvcc in CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda"})
    f = the(env, "nvcc")
    assert f.blocks == checks.SOURCE_ONLY and f.severity is Severity.WARNING
    assert "cuda-toolkit-13-0" in (f.fix or "")
    assert checks.verdict(checks.run_checks(env)).summary == (
        "ready for prebuilt wheels; building from source blocked by: nvcc")


def test_wrong_cuda_home_points_at_the_nvcc_that_exists() -> None:
    env = mutate(H100(), nvcc=None, nvcc_elsewhere=("/usr/local/cuda-13.0/bin/nvcc",),
                 unknown={"nvcc": "CUDA_HOME=/opt/nope but /opt/nope/bin/nvcc does not exist"})
    f = the(env, "nvcc")
    assert f.title == "CUDA_HOME points at no CUDA toolkit"
    assert f.fix == "export CUDA_HOME=/usr/local/cuda-13.0"


def test_nvcc_major_mismatch_blocks_source_minor_is_info() -> None:
    nvcc12 = Tool(path="/usr/local/cuda-12.8/bin/nvcc", version="12.8", ok=True, source="PATH")
    f = the(mutate(H100(), nvcc=nvcc12), "nvcc-torch-cuda")
    assert f.severity is Severity.WARNING and f.blocks == checks.SOURCE_ONLY
    nvcc131 = mutate(nvcc12, version="13.1")
    assert the(mutate(H100(), nvcc=nvcc131), "nvcc-torch-cuda").severity is Severity.INFO


@pytest.mark.parametrize(("nvcc", "gcc", "ok"), [
    ("13.0", "15.2.0", True), ("13.0", "16.1.0", False), ("12.4", "14.1.0", False),
    ("12.8", "14.2.0", True), ("11.8", "12.1.0", False),
])
def test_host_gcc_limit_per_nvcc(nvcc: str, gcc: str, ok: bool) -> None:
    env = H100()
    assert env.nvcc and env.gxx
    env = mutate(env, nvcc=mutate(env.nvcc, version=nvcc), gxx=mutate(env.gxx, version=gcc))
    f = the(env, "host-compiler")
    assert (f.severity is Severity.OK) is ok
    if not ok:
        assert "export CC=gcc-" in (f.fix or "") and f.blocks == checks.SOURCE_ONLY


def test_ninja_missing_and_broken() -> None:
    missing = the(mutate(H100(), ninja=None), "ninja")
    assert missing.fix is not None and missing.fix.endswith("-m pip install ninja")
    assert "hours" in missing.why and missing.blocks == checks.SOURCE_ONLY
    env = H100()
    assert env.ninja
    broken = the(mutate(env, ninja=mutate(env.ninja, ok=False, error="exited 1")), "ninja")
    assert "uninstall -y ninja" in (broken.fix or "")


def test_max_jobs_too_high_gives_the_number_to_use() -> None:
    f = the(with_env_vars(H100(), MAX_JOBS="256"), "max-jobs")
    assert f.severity is Severity.WARNING
    assert f.fix == "export MAX_JOBS=8 NVCC_THREADS=2"   # 16 cores / 2 threads; 125 GiB is plenty


def test_max_jobs_not_a_number() -> None:
    f = the(with_env_vars(H100(), MAX_JOBS="lots"), "max-jobs")
    assert f.severity is Severity.WARNING and f.blocks == checks.SOURCE_ONLY


def test_max_jobs_sane_value_passes() -> None:
    assert the(with_env_vars(H100(), MAX_JOBS="4"), "max-jobs").severity is Severity.OK


def test_low_disk_blocks_source_builds() -> None:
    env = mutate(H100(), resources__disk_free_mib={"build": 900, "cache": 900, "tmp": 50000})
    found = findings(env, "disk")
    assert [f.title for f in found] == ["low disk space in the build folder",
                                        "low disk space in the cache folder"]


@pytest.mark.parametrize(("installed", "severity"), [
    (None, Severity.WARNING), ("3.5.1", Severity.WARNING), ("3.6.0", Severity.OK),
])
def test_triton_against_torch_pin(installed: str | None, severity: Severity) -> None:
    env = mutate(H100(), triton_version=installed)
    f = the(env, "triton")
    assert f.severity is severity
    if severity is not Severity.OK:
        assert "'triton==3.6.0'" in (f.fix or "")


def test_broken_flash_attn_names_what_it_was_built_for() -> None:
    pkg = PackageInfo(name="flash-attn", version="2.8.3+cu12torch2.6cxx11abiFALSE",
                      location="/site", import_status=ImportStatus.BROKEN,
                      import_error="import flash_attn_2_cuda: ImportError: undefined symbol: _ZN3c105ErrorC2E")
    f = the(mutate(H100(), packages=(pkg,)), "package-flash-attn")
    assert f.severity is Severity.ERROR
    assert "built for torch 2.6, installed torch is 2.11.0+cu130" in f.evidence
    assert "built with C++11 ABI=False, torch uses True" in f.evidence
    assert "built for CUDA 12, torch uses CUDA 13.0" in f.evidence
    assert f.fix is not None and "uninstall -y flash-attn" in f.fix


def test_fa_kernels_build_info_mismatch_is_explained_without_importing() -> None:
    pkg = PackageInfo(name="fa-kernels", version="0.1.0+cu130torch2.14cxx11abiTRUE", location="/s",
                      import_status=ImportStatus.OK,
                      build_info={"torch": "2.14.1", "cuda": "13.0", "cxx11_abi": "True"})
    f = the(mutate(H100(), packages=(pkg,)), "package-fa-kernels")
    assert f.severity is Severity.ERROR and "built for torch 2.14.1" in f.evidence


STABLE_INFO = {"torch": "2.14.1", "cuda": "13.0", "cxx11_abi": "True", "abi": "stable", "torch_target": "2.10"}


def _stable_pkg(**info: str) -> PackageInfo:
    return PackageInfo(name="fa-kernels", version="0.1.0+cu130torch2.10stableabi", location="/s",
                       import_status=ImportStatus.OK, build_info={**STABLE_INFO, **info})


def test_doctor_explains_a_stable_abi_build_that_serves_this_torch() -> None:
    f = the(mutate(H100(), packages=(_stable_pkg(),)), "package-fa-kernels")  # built on 2.14.1, runs on 2.11
    assert f.severity is Severity.OK and "stable-ABI build that serves this torch" in f.title
    assert f.evidence.startswith("serves torch >= 2.10 with CUDA 13.x (13.0 or newer), CPython >= 3.10 (abi3); "
                                 "compiled against torch 2.14.1 with TORCH_TARGET_VERSION 2.10; this is torch "
                                 "2.11.0+cu130")


@pytest.mark.parametrize(("pkg", "evidence"), [
    (_stable_pkg(), "stable-ABI build for torch >= 2.10, installed torch 2.9.1+cu130 is older than its target"),
    # no build metadata: the version tag says the same
    (PackageInfo(name="fa-kernels", version="0.1.0+cu130torch2.10stableabi", location="/s",
                 import_status=ImportStatus.BROKEN, import_error="undefined symbol: torch_call_dispatcher"),
     "older than its target"),
])
def test_doctor_catches_a_torch_older_than_the_stable_abi_target(pkg: PackageInfo, evidence: str) -> None:
    f = the(mutate(H100(), torch__version="2.9.1+cu130", packages=(pkg,)), "package-fa-kernels")
    assert f.severity is Severity.ERROR and evidence in f.evidence
    assert f.fix is not None and "fa-dist install" in f.fix


def test_stable_abi_build_of_another_cuda_major_is_still_a_mismatch() -> None:
    f = the(mutate(H100(), packages=(_stable_pkg(cuda="12.6"),)), "package-fa-kernels")
    assert f.severity is Severity.ERROR and "built for CUDA 12.6, torch uses CUDA 13.0" in f.evidence


def _rocm_env() -> Environment:
    gpu = Gpu(index=0, name="AMD Instinct MI300X", arch=Arch.parse("gfx942"), memory_mib=196592)
    return mutate(H100(), driver=None, torch__cuda=None, torch__hip="6.4.43482",
                  torch__devices=(gpu,), torch__arch_list=("gfx90a", "gfx942"),
                  rocm=Rocm(version="6.4.1", source="/opt/rocm/.info/version", gfx=("gfx942",)))


def test_rocm_matching_is_quiet() -> None:
    env = _rocm_env()
    assert not findings(env, "rocm") and not findings(env, "rocm-arch")
    assert not findings(env, "nvcc")  # HIP torch needs hipcc, not nvcc


def test_rocm_version_and_arch_mismatches() -> None:
    env = _rocm_env()
    assert env.rocm
    drift = mutate(env, rocm=mutate(env.rocm, version="6.2.4"))
    assert the(drift, "rocm").severity is Severity.WARNING
    no_arch = mutate(env, torch__arch_list=("gfx90a",))
    assert the(no_arch, "rocm-arch").severity is Severity.ERROR
    wrong_env = with_env_vars(env, PYTORCH_ROCM_ARCH="gfx90a")
    assert the(wrong_env, "rocm-arch").fix == "export PYTORCH_ROCM_ARCH=gfx942"


@pytest.mark.parametrize(("value", "warns"), [("8.0;9.0", False), ("8.0", True), ("8.0+PTX", False),
                                              ("9.0a", False)])
def test_torch_cuda_arch_list_must_cover_the_gpu(value: str, warns: bool) -> None:
    env = with_env_vars(H100(), TORCH_CUDA_ARCH_LIST=value)
    assert bool(findings(env, "arch-list")) is warns


def test_findings_are_sorted_most_severe_first() -> None:
    env = mutate(with_env_vars(H100(), MAX_JOBS="256"), ninja=None, triton_version=None)
    ranks = [f.severity.rank for f in checks.run_checks(env)]
    assert ranks == sorted(ranks, reverse=True)


BLOCKERS: list[tuple[Callable[[], Environment], str]] = [
    (lambda: mutate(H100(), ninja=None), "ready for prebuilt wheels; building from source blocked by: ninja"),
    (lambda: load("cpu-no-torch"), "not ready: blocked by torch-import, gpu-visible"),
]


@pytest.mark.parametrize(("make", "summary"), BLOCKERS)
def test_verdict_summaries(make: Callable[[], Environment], summary: str) -> None:
    assert checks.verdict(checks.run_checks(make())).summary == summary


def test_kernel_package_failing_only_for_want_of_torch_points_at_torch() -> None:
    pkg = PackageInfo(name="fa-kernels", version="0.1.0", location="/s", import_status=ImportStatus.BROKEN,
                      import_error="import fa_kernels: ModuleNotFoundError: No module named 'torch'")
    env = mutate(load("cpu-no-torch"), packages=(pkg,))
    f = the(env, "package-fa-kernels")
    assert f.severity is Severity.INFO and f.fix is None and f.why == "see torch-import"
    assert the(env, "torch-import").severity is Severity.ERROR


def test_one_source_build_decision_for_doctor_build_and_install() -> None:
    """Hidden GPUs block a build "for this GPU" (doctor, install) but not a CUDA compile for named archs."""
    env = with_env_vars(mutate(H100(), torch__devices=(), torch__cuda_available=False),
                        CUDA_VISIBLE_DEVICES="")
    findings = checks.run_checks(env)
    for_this_gpu = checks.source_build(findings)
    assert not for_this_gpu.allowed and "gpu-visible" in for_this_gpu.ids
    assert checks.verdict(findings).source_blockers == for_this_gpu.ids
    assert checks.source_build(findings, needs_gpu=False).allowed
    assert checks.source_build(checks.run_checks(H100())).allowed
