"""Pure parsers for what tools print. Each takes text and returns a value or None; none raises."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fa_dist.model.versions import CudaVersion


def nvcc_version(text: str) -> CudaVersion | None:
    """``nvcc --version``: '... Cuda compilation tools, release 13.0, V13.0.48'."""
    m = re.search(r"release (\d+\.\d+)", text)
    return CudaVersion.parse(m[1]) if m else None


def gcc_version(text: str) -> str | None:
    """``gcc -dumpfullversion`` ('12.2.0') or the first line of ``gcc --version``."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if re.fullmatch(r"\d+(\.\d+)*", first):
        return first
    m = re.search(r"\)\s+(\d+\.\d+(?:\.\d+)?)", first) or re.search(r"(\d+\.\d+\.\d+)", first)
    return m[1] if m else None


def major(version: str | None) -> int | None:
    """The leading integer of a dotted version: '12.2.0' -> 12."""
    m = re.match(r"(\d+)", version or "")
    return int(m[1]) if m else None


def ninja_version(text: str) -> str | None:
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)
    return m[1] if m else None


@dataclass(frozen=True)
class SmiGpu:
    name: str
    driver: str
    memory_mib: int | None
    compute_cap: str | None


def nvidia_smi_query(text: str) -> list[SmiGpu]:
    """``nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not re.match(r"\d+\.\d+", parts[1]):
            continue
        mem = re.match(r"(\d+)", parts[2])
        cap = parts[3] if len(parts) > 3 and re.fullmatch(r"\d+\.\d+", parts[3]) else None
        gpus.append(SmiGpu(parts[0], parts[1], int(mem[1]) if mem else None, cap))
    return gpus


def nvidia_smi_cuda(text: str) -> CudaVersion | None:
    """The 'CUDA Version: 13.0' in plain ``nvidia-smi``'s banner: the newest CUDA the driver runs."""
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", text)
    return CudaVersion.parse(m[1]) if m else None


def proc_driver_version(text: str) -> str | None:
    """``/proc/driver/nvidia/version``: 'NVRM version: NVIDIA UNIX ... Kernel Module  580.159.04  ...'."""
    m = re.search(r"NVRM version:.*?\s(\d{3,}\.\d+(?:\.\d+)?)\s", text + " ")
    return m[1] if m else None


def rocminfo_gfx(text: str) -> list[str]:
    """The distinct GPU agents' ISA names in ``rocminfo`` output ('Name:  gfx942'), in order."""
    seen: list[str] = []
    for m in re.finditer(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", text, re.MULTILINE):
        if m[1] not in seen:
            seen.append(m[1])
    return seen


def rocm_version(text: str) -> str | None:
    """``/opt/rocm/.info/version`` ('6.2.4-120') or ``hipconfig --version`` ('6.2.41134-65d174c3e')."""
    m = re.match(r"\s*(\d+\.\d+)\.?(\d*)", text)
    if not m:
        return None
    patch = m[2]
    # hipconfig glues the patch to a build number: 6.2.41134 means 6.2.4 (build 1134)
    if len(patch) > 2:
        patch = patch[0]
    return f"{m[1]}.{patch}" if patch else m[1]


def meminfo(text: str) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in MiB from ``/proc/meminfo``."""
    values: dict[str, int] = {}
    for m in re.finditer(r"^(MemTotal|MemAvailable):\s+(\d+)\s*kB", text, re.MULTILINE):
        values[m[1]] = int(m[2]) // 1024
    return values.get("MemTotal"), values.get("MemAvailable")
