"""Detectors for the host: driver, ROCm, compilers, ninja, CPUs, memory, disk.

Each detector observes and returns ``(value, None)`` or ``(None, why it could not see)``; none
raises and none decides. ``HostView`` says where to look, so tests point it at fake tools and files.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fa_dist import subproc
from fa_dist.facts import parsers
from fa_dist.model.environment import Gpu, NvidiaDriver, Resources, Rocm, Tool
from fa_dist.model.versions import Arch, CudaVersion


@dataclass(frozen=True)
class HostView:
    """Where the detectors look: the PATH and environment to use, and the filesystem root."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    root: Path = Path("/")
    use_nvml: bool = True
    extra_bin: tuple[str, ...] = ()  # the target interpreter's bin folder, searched first

    @property
    def path(self) -> str:
        return os.pathsep.join([*self.extra_bin, self.env.get("PATH", "")])

    def file(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        try:
            return self.file(absolute).read_text(errors="replace")
        except OSError:
            return None

    def which(self, name: str) -> str | None:
        return subproc.which(name, self.path)


# -- NVIDIA driver -----------------------------------------------------------------------------


DriverReading = tuple[NvidiaDriver | None, str | None]


def nvidia_driver(view: HostView) -> DriverReading:
    """NVML first (it sees every GPU, whatever CUDA_VISIBLE_DEVICES says), then /proc, then
    nvidia-smi: a process that takes up to seconds, run only when neither of the others answers."""
    smi = view.which("nvidia-smi")
    return pick_driver(
        nvml=_nvml_driver if view.use_nvml else None,
        proc_text=view.read("/proc/driver/nvidia/version"),
        smi=(lambda: _smi_driver(smi)) if smi else None,
    )


def pick_driver(
    *,
    nvml: Callable[[], DriverReading] | None,
    proc_text: str | None,
    smi: Callable[[], DriverReading] | None,
) -> DriverReading:
    """The first reader that answers, in the order NVML, /proc, nvidia-smi (None: not available);
    with none, why each could not. /proc gives the driver version only (no GPUs, no CUDA version):
    the GPUs torch sees and the driver floors of decide/knowledge.py do the rest."""
    reasons = []
    if nvml is not None:
        found, why = nvml()
        if found:
            return found, None
        reasons.append(f"NVML: {why}")
    version = parsers.proc_driver_version(proc_text) if proc_text else None
    if version:
        return NvidiaDriver(version=version, cuda=None, source="/proc/driver/nvidia/version"), None
    reasons.append("/proc/driver/nvidia/version: absent" if proc_text is None else "unparsable")
    if smi is None:
        reasons.append("nvidia-smi: not on PATH")
        return None, "; ".join(reasons)
    found, why = smi()
    if found:
        return found, None
    reasons.append(f"nvidia-smi: {why}")
    return None, "; ".join(reasons)


def _smi_driver(smi: str) -> DriverReading:
    query = subproc.run(
        [smi, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
        timeout=20,
    )
    if not query.ok:
        return None, query.describe_failure()
    rows = parsers.nvidia_smi_query(query.stdout)
    if not rows:
        return None, "no GPU rows in its output"
    banner = subproc.run([smi], timeout=20)
    gpus = tuple(
        Gpu(
            index=i,
            name=r.name,
            arch=Arch.parse(r.compute_cap) if r.compute_cap else None,
            memory_mib=r.memory_mib,
        )
        for i, r in enumerate(rows)
    )
    cuda = parsers.nvidia_smi_cuda(banner.stdout) if banner.ok else None
    return NvidiaDriver(version=rows[0].driver, cuda=cuda, source="nvidia-smi", gpus=gpus), None


class _NvmlMemory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


def _nvml_driver() -> DriverReading:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None, "libnvidia-ml.so.1 not loadable"
    if nvml.nvmlInit_v2() != 0:
        return None, "nvmlInit failed (driver not loaded?)"
    try:
        buf = ctypes.create_string_buffer(96)
        if nvml.nvmlSystemGetDriverVersion(buf, 96) != 0:
            return None, "nvmlSystemGetDriverVersion failed"
        cuda_raw = ctypes.c_int()
        cuda = None
        if nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda_raw)) == 0:
            cuda = CudaVersion.parse(str(cuda_raw.value))
        return NvidiaDriver(
            version=buf.value.decode(), cuda=cuda, source="nvml", gpus=_nvml_gpus(nvml)
        ), None
    finally:
        nvml.nvmlShutdown()


def _nvml_gpus(nvml: ctypes.CDLL) -> tuple[Gpu, ...]:
    count = ctypes.c_uint()
    if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
        return ()
    gpus = []
    for i in range(count.value):
        handle = ctypes.c_void_p()
        if nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
            continue
        name = ctypes.create_string_buffer(96)
        nvml.nvmlDeviceGetName(handle, name, 96)
        cc_major, cc_minor = ctypes.c_int(), ctypes.c_int()
        arch = None
        if (
            nvml.nvmlDeviceGetCudaComputeCapability(
                handle, ctypes.byref(cc_major), ctypes.byref(cc_minor)
            )
            == 0
        ):
            arch = Arch.from_capability(cc_major.value, cc_minor.value)
        mem = _NvmlMemory()
        memory = (
            mem.total // (1 << 20)
            if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) == 0
            else None
        )
        gpus.append(
            Gpu(index=i, name=name.value.decode(errors="replace"), arch=arch, memory_mib=memory)
        )
    return tuple(gpus)


# -- ROCm --------------------------------------------------------------------------------------


def rocm(view: HostView) -> tuple[Rocm | None, str | None]:
    version, source = None, ""
    info = view.read("/opt/rocm/.info/version")
    if info:
        version, source = parsers.rocm_version(info), "/opt/rocm/.info/version"
    hipconfig = view.which("hipconfig") or _existing(view, "/opt/rocm/bin/hipconfig")
    if version is None and hipconfig:
        out = subproc.run([hipconfig, "--version"], timeout=20)
        if out.ok:
            version, source = parsers.rocm_version(out.stdout), "hipconfig --version"
    gfx = _rocm_gfx(view)
    if version is None and not gfx:
        return None, "no /opt/rocm/.info/version, hipconfig, rocminfo or rocm_agent_enumerator"
    return Rocm(version=version, source=source or "rocminfo", gfx=tuple(gfx)), None


def _rocm_gfx(view: HostView) -> list[str]:
    rocminfo = view.which("rocminfo") or _existing(view, "/opt/rocm/bin/rocminfo")
    if rocminfo:
        out = subproc.run([rocminfo], timeout=30)
        if out.ok:
            return parsers.rocminfo_gfx(out.stdout)
    enumerator = view.which("rocm_agent_enumerator") or _existing(
        view, "/opt/rocm/bin/rocm_agent_enumerator"
    )
    if enumerator:
        out = subproc.run([enumerator], timeout=30)
        if out.ok:
            return [n for n in dict.fromkeys(out.stdout.split()) if n != "gfx000"]
    return []


def _existing(view: HostView, absolute: str) -> str | None:
    path = view.file(absolute)
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


# -- compilers and build tools -----------------------------------------------------------------


def nvcc(view: HostView) -> tuple[Tool | None, str | None, tuple[str, ...]]:
    """The nvcc torch.utils.cpp_extension would use, and any other nvcc found (for the fix text).

    torch's order: CUDA_HOME, then CUDA_PATH, then nvcc on PATH, then /usr/local/cuda. A CUDA_HOME
    that holds no nvcc is not skipped by torch, so it is not skipped here either.
    """
    candidates: list[tuple[str, str]] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if view.env.get(var):
            candidates.append((var, str(Path(view.env[var]) / "bin" / "nvcc")))
    on_path = view.which("nvcc")
    if on_path:
        candidates.append(("PATH", on_path))
    candidates.append(("/usr/local/cuda", str(view.file("/usr/local/cuda/bin/nvcc"))))
    existing = [(src, p) for src, p in candidates if Path(p).is_file()]
    others = tuple(dict.fromkeys(p for _, p in existing[1:] if p != candidates[0][1]))
    source, chosen = candidates[0]
    if not Path(chosen).is_file():
        if source in ("CUDA_HOME", "CUDA_PATH"):
            return (
                None,
                f"{source}={view.env[source]} but {chosen} does not exist",
                tuple(p for _, p in existing),
            )
        return None, "no nvcc in CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda", ()
    out = subproc.run([chosen, "--version"], timeout=30)
    version = parsers.nvcc_version(out.stdout) if out.ok else None
    tool = Tool(
        path=chosen,
        version=str(version) if version else None,
        ok=out.ok and bool(version),
        source=source,
        error=None if out.ok else out.describe_failure(),
    )
    return tool, None, others


def compiler(view: HostView, name: str, env_var: str) -> tuple[Tool | None, str | None]:
    """gcc/g++ (or whatever CC/CXX name): its version from ``-dumpfullversion``."""
    chosen = view.env.get(env_var) or name
    path = chosen if os.path.isabs(chosen) else view.which(chosen)
    if not path:
        return None, f"{chosen} not on PATH"
    out = subproc.run([path, "-dumpfullversion", "-dumpversion"], timeout=20)
    version = parsers.gcc_version(out.stdout) if out.ok else None
    return Tool(
        path=path,
        version=version,
        ok=out.ok,
        source=env_var if env_var in view.env else "PATH",
        error=None if out.ok else out.describe_failure(),
    ), None


def hipcc(view: HostView) -> tuple[Tool | None, str | None]:
    path = view.which("hipcc") or _existing(view, "/opt/rocm/bin/hipcc")
    if not path:
        return None, "hipcc not on PATH or in /opt/rocm/bin"
    out = subproc.run([path, "--version"], timeout=30)
    version = None
    for line in out.stdout.splitlines():
        if line.startswith("HIP version:"):
            version = parsers.rocm_version(line.split(":", 1)[1])
    return Tool(
        path=path,
        version=version,
        ok=out.ok,
        source="PATH",
        error=None if out.ok else out.describe_failure(),
    ), None


def ninja(view: HostView) -> tuple[Tool | None, str | None]:
    """torch decides 'ninja is available' by running ``ninja --version`` and checking the exit code."""
    path = view.which("ninja")
    if not path:
        return None, "ninja not on PATH (nor in the target interpreter's bin folder)"
    out = subproc.run([path, "--version"], timeout=20)
    return Tool(
        path=path,
        version=parsers.ninja_version(out.stdout) if out.ok else None,
        ok=out.ok,
        source="PATH",
        error=None if out.ok else out.describe_failure(),
    ), None


# -- resources ---------------------------------------------------------------------------------


def resources(view: HostView, folders: Mapping[str, Path]) -> Resources:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    total, available = parsers.meminfo(view.read("/proc/meminfo") or "")
    disk: dict[str, int] = {}
    for label, folder in folders.items():
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # a cache folder not made yet lives on its parent's disk
        try:
            disk[label] = shutil.disk_usage(probe).free // (1 << 20)
        except OSError:
            continue
    return Resources(
        cpus=cpus, mem_total_mib=total, mem_available_mib=available, disk_free_mib=disk
    )


RELEVANT_ENV = (
    "CUDA_HOME",
    "CUDA_PATH",
    "TORCH_CUDA_ARCH_LIST",
    "MAX_JOBS",
    "NVCC_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "PYTORCH_ROCM_ARCH",
    "ROCM_PATH",
    "HIP_VISIBLE_DEVICES",
    "CC",
    "CXX",
    "HF_HUB_OFFLINE",  # transformers' hub-kernel fallback for flash_attention_2 needs the hub
    "FA_KERNELS_BACKEND",
    "NVCC_PREPEND_FLAGS",
    "NVCC_APPEND_FLAGS",
    "TRITON_INTERPRET",
    "TRITON_CACHE_DIR",
    "FLASH_ATTENTION_FORCE_BUILD",
    "FLASH_ATTENTION_SKIP_CUDA_BUILD",
    "FLASH_ATTN_CUDA_ARCHS",
    "PIP_NO_BUILD_ISOLATION",
)


def relevant_env(view: HostView) -> dict[str, str]:
    return {k: view.env[k] for k in RELEVANT_ENV if k in view.env}
