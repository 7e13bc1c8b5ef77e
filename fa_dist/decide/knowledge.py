"""Facts about the CUDA/ROCm/PyTorch world, as data. Update a value here and every check follows.

Each table names its source. Nothing in this module runs anything.
"""

from __future__ import annotations

from fa_dist.model.versions import Arch, CudaVersion

# Minimum Linux driver that runs ANY toolkit of a CUDA major under minor-version compatibility.
# Source: NVIDIA CUDA Toolkit release notes, "CUDA Driver" table (Table 2/3); same floors as uv and
# light-the-torch use.
DRIVER_FLOOR_BY_CUDA_MAJOR: dict[int, str] = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580.65.06",
}

# The driver each toolkit shipped with (GA). With an older driver of the same major the runtime still
# loads (minor-version compatibility) but PTX newer than the driver cannot be JIT-compiled.
# Source: NVIDIA CUDA Toolkit release notes, Table 3.
DRIVER_GA_BY_CUDA: dict[CudaVersion, str] = {
    CudaVersion(11, 8): "520.61.05",
    CudaVersion(12, 0): "525.60.13",
    CudaVersion(12, 1): "530.30.02",
    CudaVersion(12, 2): "535.54.03",
    CudaVersion(12, 3): "545.23.06",
    CudaVersion(12, 4): "550.54.14",
    CudaVersion(12, 5): "555.42.02",
    CudaVersion(12, 6): "560.28.03",
    CudaVersion(12, 8): "570.26",
    CudaVersion(12, 9): "575.51.03",
    CudaVersion(13, 0): "580.65.06",
    CudaVersion(13, 1): "590.44.01",
    CudaVersion(13, 2): "595.45.04",
}

# Newest host GCC major that nvcc accepts, keyed by the first nvcc version of each range.
# Source: the CUDA Installation Guide for Linux, "Supported compilers"; nvcc's host_config.h
# ("#error -- unsupported GNU version! gcc versions later than N are not supported!").
GCC_MAX_BY_NVCC: tuple[tuple[CudaVersion, int], ...] = (
    (CudaVersion(11, 0), 11),
    (CudaVersion(12, 0), 12),
    (CudaVersion(12, 4), 13),
    (CudaVersion(12, 7), 14),
    (CudaVersion(13, 0), 15),
)

# (first toolkit that can target the arch, last toolkit that can, or None if still supported).
# Source: CUDA Toolkit release notes / nvcc --list-gpu-arch; CUDA 13.0 dropped sm_5x, sm_6x, sm_70/72
# and renamed sm_101 to sm_110.
ARCH_TOOLKIT_RANGE: dict[str, tuple[CudaVersion, CudaVersion | None]] = {
    "sm_50": (CudaVersion(6, 0), CudaVersion(12, 9)),
    "sm_60": (CudaVersion(8, 0), CudaVersion(12, 9)),
    "sm_61": (CudaVersion(8, 0), CudaVersion(12, 9)),
    "sm_70": (CudaVersion(9, 0), CudaVersion(12, 9)),
    "sm_72": (CudaVersion(10, 0), CudaVersion(12, 9)),
    "sm_75": (CudaVersion(10, 0), None),
    "sm_80": (CudaVersion(11, 0), None),
    "sm_86": (CudaVersion(11, 1), None),
    "sm_87": (CudaVersion(11, 4), None),
    "sm_89": (CudaVersion(11, 8), None),
    "sm_90": (CudaVersion(12, 0), None),
    "sm_90a": (CudaVersion(12, 0), None),
    "sm_100": (CudaVersion(12, 8), None),
    "sm_100a": (CudaVersion(12, 8), None),
    "sm_101": (CudaVersion(12, 8), CudaVersion(12, 9)),
    "sm_103": (CudaVersion(12, 9), None),
    "sm_110": (CudaVersion(13, 0), None),
    "sm_120": (CudaVersion(12, 8), None),
    "sm_120a": (CudaVersion(12, 8), None),
    "sm_121": (CudaVersion(12, 9), None),
}

# What each of our backends needs. Source: FlashAttention-2 README (CUDA kernels: Ampere or newer);
# Triton's README (NVIDIA compute capability 7.5+, AMD CDNA/RDNA).
MIN_ARCH_CUDA_BACKEND = Arch.parse("sm_80")
MIN_ARCH_TRITON_BACKEND = Arch.parse("sm_75")

# The triton release each torch minor pins (Requires-Dist of the Linux CUDA wheels). The probe reads
# the real pin from the installed torch; this table is the fallback when metadata is unreadable.
# Source: PyTorch release notes / torch wheels' METADATA.
TRITON_PIN_BY_TORCH: dict[tuple[int, int], str] = {
    (2, 4): "3.0.0",
    (2, 5): "3.1.0",
    (2, 6): "3.2.0",
    (2, 7): "3.3",
    (2, 8): "3.4.0",
    (2, 9): "3.5",
    (2, 10): "3.6.0",
    (2, 11): "3.6.0",
    (2, 12): "3.7.0",
    (2, 13): "3.7.1",
    (2, 14): "3.8",
}

# Peak host RAM of one nvcc job building our kernels, per NVCC_THREADS thread, in MiB. Upstream
# flash-attn's big instantiations peak at 3-9 GB (REFERENCE.md section 5); ours are smaller, and the
# estimate stays on the safe side.
NVCC_JOB_PEAK_MIB = 4096

# Free disk a source build needs in its build and cache folders (objects, the wheel, pip's copy).
MIN_BUILD_DISK_MIB = 4096


def gcc_max_for_nvcc(nvcc: CudaVersion) -> int | None:
    """The newest GCC major this nvcc accepts, or None for an nvcc older than the table."""
    newest: int | None = None
    for first, gcc in GCC_MAX_BY_NVCC:
        if nvcc >= first:
            newest = gcc
    return newest


def toolkit_can_target(toolkit: CudaVersion, arch: Arch) -> bool:
    """Whether nvcc of ``toolkit`` can generate code for ``arch`` (an arch missing from the table: no)."""
    span = ARCH_TOOLKIT_RANGE.get(str(arch)) or ARCH_TOOLKIT_RANGE.get(str(arch.base))
    if span is None:
        return False
    first, last = span
    return first <= toolkit and (last is None or toolkit <= last)


def pytorch_index_for(cuda: CudaVersion) -> str:
    """PyTorch's own wheel index for one CUDA build."""
    return f"https://download.pytorch.org/whl/{cuda.tag}"


# CUDA builds PyTorch has published indexes for (https://download.pytorch.org/whl/cuXYZ).
# Source: pytorch.org "Get started" matrices and the index listing, 2.0 through 2.11.
PYTORCH_CUDA_BUILDS: tuple[CudaVersion, ...] = tuple(
    CudaVersion.parse(t) for t in ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130")
)

# xFormers releases and the torch each serves: its wheels' `Requires-Dist: torch...`. Up to 0.0.34 a
# release is built against one torch and pins it exactly (cp39-abi3 wheels, one torch each); 0.0.35
# ships one py39-none wheel on torch's stable ABI that serves every torch from 2.10 on. Oldest first.
# Source: the METADATA of each release's Linux wheel on PyPI (checked 2026-12 for 0.0.34 and 0.0.35).
XFORMERS_TORCH: tuple[tuple[str, str], ...] = (
    ("0.0.32.post2", "==2.8.0"),
    ("0.0.33.post2", "==2.9.1"),
    ("0.0.34", "==2.10.0"),
    ("0.0.35", ">=2.10"),
)

# GPU archs (base, no suffix) each FlashAttention generation runs on.
# Source: Dao-AILab/flash-attention README: FlashAttention-3 (hopper/) "H100 / H800 GPU";
# FlashAttention-4 (flash_attn/cute, CuTe DSL) "Hopper and Blackwell" (SM90, SM100/SM103).
FA3_ARCHS = frozenset({"sm_90"})
FA4_ARCHS = frozenset({"sm_90", "sm_100", "sm_103"})
