"""Parsers against outputs captured on real machines (tests/fixtures/outputs)."""

from __future__ import annotations

from fa_dist.facts import parsers
from fa_dist.model.versions import CudaVersion

from .envs import FIXTURES

OUT = FIXTURES / "outputs"


def read(rel: str) -> str:
    return (OUT / rel).read_text()


def test_nvcc_version_from_h100_and_ci_box() -> None:
    assert parsers.nvcc_version(read("h100/nvcc-version.txt")) == CudaVersion(13, 0)
    assert parsers.nvcc_version(read("local/nvcc-version.txt")) == CudaVersion(13, 0)
    assert parsers.nvcc_version("command not found") is None


def test_nvidia_smi_query_csv() -> None:
    (gpu,) = parsers.nvidia_smi_query(read("h100/nvidia-smi-query.txt"))
    assert gpu == parsers.SmiGpu("NVIDIA H100 80GB HBM3", "580.159.04", 81559, "9.0")
    assert parsers.nvidia_smi_query("No devices were found\n") == []


def test_nvidia_smi_banner_cuda_version() -> None:
    assert parsers.nvidia_smi_cuda(read("h100/nvidia-smi.txt")) == CudaVersion(13, 0)


def test_proc_driver_version_open_kernel_module() -> None:
    assert parsers.proc_driver_version(read("h100/proc-driver-nvidia-version.txt")) == "580.159.04"
    legacy = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    assert parsers.proc_driver_version(legacy) == "535.104.05"


def test_gcc_version_forms() -> None:
    assert parsers.gcc_version(read("local/gcc-version.txt")) == "12.2.0"
    assert parsers.gcc_version("13.3.0\n") == "13.3.0"
    assert parsers.major("13.3.0") == 13
    assert parsers.major(None) is None


def test_ninja_version_with_kitware_suffix() -> None:
    assert parsers.ninja_version(read("local/ninja-version.txt")) == "1.11.1"
    assert parsers.ninja_version("1.13.2.git.kitware.jobserver-pipe-1") == "1.13.2"


def test_rocminfo_lists_each_gpu_isa_once_and_skips_cpu_agents() -> None:
    assert parsers.rocminfo_gfx(read("mi300x/rocminfo.txt")) == ["gfx942"]


def test_rocm_version_file_and_hipconfig() -> None:
    assert parsers.rocm_version("6.2.4-120\n") == "6.2.4"
    assert parsers.rocm_version("6.2.41134-65d174c3e") == "6.2.4"
    assert parsers.rocm_version("garbage") is None


def test_meminfo() -> None:
    text = "MemTotal:       24567890 kB\nMemFree:  100 kB\nMemAvailable:   20480000 kB\n"
    assert parsers.meminfo(text) == (24567890 // 1024, 20000)
