"""Host detectors against fake tools on PATH that print outputs captured on real machines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fa_dist.facts import host
from fa_dist.model.versions import Arch, CudaVersion

from .envs import FIXTURES

pytestmark = pytest.mark.integration
OUT = FIXTURES / "outputs"


def fake_tool(bin_dir: Path, name: str, stdout_file: Path | None = None, *, exit_code: int = 0,
              script: str | None = None) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    body = script or (f"cat '{stdout_file}'\n" if stdout_file else "")
    tool.write_text(f"#!/bin/sh\n{body}exit {exit_code}\n")
    tool.chmod(0o755)
    return tool


def view(tmp_path: Path, **env: str) -> host.HostView:
    return host.HostView(env={"PATH": str(tmp_path / "bin"), **env}, root=tmp_path / "root",
                         use_nvml=False)


def test_driver_from_nvidia_smi_when_neither_nvml_nor_proc_answers(tmp_path: Path) -> None:
    smi_script = (f'case "$1" in --query-gpu*) cat "{OUT}/h100/nvidia-smi-query.txt";; '
                  f'*) cat "{OUT}/h100/nvidia-smi.txt";; esac\n')
    fake_tool(tmp_path / "bin", "nvidia-smi", script=smi_script)
    driver, why = host.nvidia_driver(view(tmp_path))
    assert why is None and driver is not None
    assert (driver.version, driver.cuda, driver.source) == ("580.159.04", CudaVersion(13, 0), "nvidia-smi")
    assert [(g.name, g.arch, g.memory_mib) for g in driver.gpus] == [
        ("NVIDIA H100 80GB HBM3", Arch.parse("sm_90"), 81559)]


def test_nvidia_smi_is_not_run_when_proc_answers(tmp_path: Path) -> None:
    ran = tmp_path / "smi-ran"
    fake_tool(tmp_path / "bin", "nvidia-smi", script=f"touch '{ran}'\n")
    proc = tmp_path / "root/proc/driver/nvidia/version"
    proc.parent.mkdir(parents=True)
    proc.write_text((OUT / "h100/proc-driver-nvidia-version.txt").read_text())
    driver, why = host.nvidia_driver(view(tmp_path))
    assert why is None and driver is not None
    assert (driver.version, driver.source) == ("580.159.04", "/proc/driver/nvidia/version")
    assert not ran.exists()


def test_driver_from_proc_alone_when_nvidia_smi_is_broken(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "nvidia-smi", script="echo 'NVIDIA-SMI has failed' >&2\n", exit_code=9)
    proc = tmp_path / "root/proc/driver/nvidia/version"
    proc.parent.mkdir(parents=True)
    proc.write_text((OUT / "h100/proc-driver-nvidia-version.txt").read_text())
    driver, _ = host.nvidia_driver(view(tmp_path))
    assert driver is not None and driver.version == "580.159.04" and driver.cuda is None


def test_no_driver_says_where_it_looked(tmp_path: Path) -> None:
    driver, why = host.nvidia_driver(view(tmp_path))
    assert driver is None
    assert why == "/proc/driver/nvidia/version: absent; nvidia-smi: not on PATH"


def test_nvcc_follows_torchs_order_and_reports_a_wrong_cuda_home(tmp_path: Path) -> None:
    good = tmp_path / "cuda-13.0"
    fake_tool(good / "bin", "nvcc", OUT / "h100/nvcc-version.txt")
    tool, why, _ = host.nvcc(view(tmp_path, CUDA_HOME=str(good)))
    assert why is None and tool is not None
    assert (tool.version, tool.source, tool.ok) == ("13.0", "CUDA_HOME", True)

    fake_tool(tmp_path / "bin", "nvcc", OUT / "local/nvcc-version.txt")
    tool, why, elsewhere = host.nvcc(view(tmp_path, CUDA_HOME=str(tmp_path / "nope")))
    assert tool is None
    assert why == f"CUDA_HOME={tmp_path / 'nope'} but {tmp_path / 'nope/bin/nvcc'} does not exist"
    assert elsewhere == (str(tmp_path / "bin/nvcc"),)


def test_nvcc_absent_everywhere(tmp_path: Path) -> None:
    tool, why, _ = host.nvcc(view(tmp_path))
    assert tool is None and why == "no nvcc in CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda"


def test_ninja_broken_exit_status_is_seen(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "ninja", script="echo 'ninja: error: loading' >&2\n", exit_code=1)
    tool, _ = host.ninja(view(tmp_path))
    assert tool is not None and not tool.ok and "exited 1" in (tool.error or "")


def test_ninja_in_target_interpreter_bin_is_found_first(tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv/bin"
    fake_tool(venv_bin, "ninja", script="echo 1.13.2.git.kitware.jobserver-pipe-1\n")
    v = host.HostView(env={"PATH": ""}, root=tmp_path, use_nvml=False, extra_bin=(str(venv_bin),))
    tool, _ = host.ninja(v)
    assert tool is not None and tool.ok and tool.version == "1.13.2"


def test_gcc_honours_cxx(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "g++-13", script="echo 13.3.0\n")
    tool, _ = host.compiler(view(tmp_path, CXX="g++-13"), "g++", "CXX")
    assert tool is not None and (tool.version, tool.source) == ("13.3.0", "CXX")


def test_rocm_from_version_file_and_rocminfo(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "rocminfo", OUT / "mi300x/rocminfo.txt")
    info = tmp_path / "root/opt/rocm/.info/version"
    info.parent.mkdir(parents=True)
    info.write_text("6.4.1-1\n")
    rocm, why = host.rocm(view(tmp_path))
    assert why is None and rocm is not None
    assert (rocm.version, rocm.gfx) == ("6.4.1", ("gfx942",))


def test_rocm_agent_enumerator_fallback_drops_the_cpu_agent(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "rocm_agent_enumerator", script="printf 'gfx000\\ngfx90a\\ngfx90a\\n'\n")
    rocm, _ = host.rocm(view(tmp_path))
    assert rocm is not None and rocm.gfx == ("gfx90a",) and rocm.version is None


def test_resources_read_meminfo_and_disk(tmp_path: Path) -> None:
    meminfo = tmp_path / "root/proc/meminfo"
    meminfo.parent.mkdir(parents=True)
    meminfo.write_text("MemTotal:  2097152 kB\nMemAvailable:  1048576 kB\n")
    res = host.resources(view(tmp_path), {"cache": tmp_path / "not/made/yet"})
    assert (res.mem_total_mib, res.mem_available_mib) == (2048, 1024)
    assert res.disk_free_mib["cache"] > 0
    assert res.cpus == len(os.sched_getaffinity(0))
