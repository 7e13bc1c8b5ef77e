"""Gather every fact into one Environment: the target interpreter's (through the probe) and the host's."""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fa_dist import subproc
from fa_dist._version import __version__
from fa_dist.errors import ProbeFailed
from fa_dist.facts import host, interpreter, libstdcxx
from fa_dist.model import compat
from fa_dist.model.environment import (
    Environment,
    Gpu,
    ImportStatus,
    OsInfo,
    PackageInfo,
    Provider,
    PythonInfo,
    Resources,
    Sdpa,
    TorchInfo,
)
from fa_dist.model.versions import Arch, CudaVersion
from fa_dist.paths import build_dir, cache_dir

log = logging.getLogger("fa_dist")

PROBE = Path(__file__).parent / "_probe" / "probe.py"
MARKER = "FA_DIST_PROBE "

# distribution -> (build-info file inside site-packages, compiled modules to import); a flash-attn
# that is fa-dist's compat has a marker file there instead, and modules of its own (see _probe_args)
KERNEL_DISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "flash-attn": (compat.MARKER, ("flash_attn_2_cuda",)),
    "fa-kernels": ("fa_kernels/_build_info.json", ("fa_kernels", "fa_kernels._C?")),
}
# the attention packages beside ours (issue #18), each imported in its own subprocess so that a
# crash in one is a finding; transformers is read from metadata only (importing it takes seconds)
NEIGHBOUR_DISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xformers": ("xformers/cpp_lib.json", ("xformers._C?",)),
    "flash-attn-4": ("-", ("flash_attn.cute",)),
    "flash-attn-3": ("-", ("flash_attn_3._C?", "flash_attn_interface?")),
    "vllm-flash-attn": ("-", ("vllm_flash_attn",)),
    "transformers": ("-", ()),
    "kernels": ("-", ()),
}


def probe(python: str, section: str, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run one probe section under ``python``; a crash or hang becomes ``{"error": ...}``."""
    started = time.perf_counter()
    out = subproc.run([python, str(PROBE), section, *args], timeout=timeout)
    log.debug("probe %s %s: %.2fs", section, " ".join(args), time.perf_counter() - started)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    return {"error": _crash_text(out)}


def _probe_ran(python: str, py: dict[str, Any]) -> dict[str, Any]:
    """The python section's answer, or ProbeFailed when the probe could not run at all."""
    if "error" in py:
        raise ProbeFailed(
            f"cannot run the probe with {python}: {py['error']}",
            fix="pass --python with a working interpreter (python3.10+)",
        )
    return py


def _merge_sdpa(
    torch_raw: dict[str, Any], found: dict[str, Any] | None, unknown: dict[str, str]
) -> None:
    """The SDPA probe's answer (None: not asked for) into the torch facts, or why it has none."""
    if found is None:
        return
    if "error" in found:
        unknown["sdpa"] = found["error"]
    elif "error" not in torch_raw:
        torch_raw["sdpa"] = found.get("sdpa")


def _crash_text(out: subproc.Completed) -> str:
    if out.error:
        return out.error
    if out.returncode is not None and out.returncode < 0:
        return f"killed by signal {-out.returncode} (a crash in native code)"
    tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
    return f"exited {out.returncode}: " + " | ".join(tail)


def detect(
    python: str | None = None, env: Mapping[str, str] | None = None, *, sdpa: bool = False
) -> Environment:
    """Observe the machine and the target interpreter (default: this one); with ``sdpa``, also which
    torch SDPA backends work here (a probe of its own that puts tensors on the GPU)."""
    python = python or sys.executable
    interpreter.require(python)  # before the probe: a shell or an old Python cannot run it
    view = host.HostView(
        env=dict(env if env is not None else os.environ), extra_bin=(str(Path(python).parent),)
    )
    with ThreadPoolExecutor(max_workers=6) as pool:
        py_f = pool.submit(probe, python, "python", timeout=60)
        torch_f = pool.submit(probe, python, "torch")
        sdpa_f = pool.submit(probe, python, "sdpa") if sdpa else None
        host_f = {name: pool.submit(fn, view) for name, fn in _HOST_DETECTORS.items()}
        nvcc_f = pool.submit(host.nvcc, view)
        py = _probe_ran(python, py_f.result())
        pkg_f = {
            d["name"]: pool.submit(probe, python, "import", *_probe_args(d["name"], d["version"]))
            for d in py["dists"]
        }
        near_f = {d["name"]: pool.submit(_probe_neighbour, python, d) for d in py["neighbours"]}
        torch_raw = torch_f.result()
        seen = {name: f.result() for name, f in host_f.items()}
        nvcc_tool, nvcc_why, nvcc_other = nvcc_f.result()
        packages = tuple(_package(d, pkg_f[d["name"]].result()) for d in py["dists"])
        neighbours = tuple(_package(d, near_f[d["name"]].result()) for d in py["neighbours"])
        found_sdpa = sdpa_f.result() if sdpa_f is not None else None
    unknown = {name: why for name, (_, why) in seen.items() if why}
    unknown.update({"nvcc": nvcc_why} if nvcc_why else {})
    _merge_sdpa(torch_raw, found_sdpa, unknown)
    torch = _torch(torch_raw, unknown)
    return Environment(
        fa_dist_version=__version__,
        captured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        os=OsInfo(system=platform.system(), release=platform.release(), machine=platform.machine()),
        python=_python(py),
        torch=torch,
        triton_version=py.get("triton_version"),
        packages=packages,
        driver=seen["driver"][0],  # type: ignore[arg-type]
        rocm=seen["rocm"][0],  # type: ignore[arg-type]
        nvcc=nvcc_tool,
        nvcc_elsewhere=nvcc_other,
        hipcc=seen["hipcc"][0],  # type: ignore[arg-type]
        gcc=seen["gcc"][0],  # type: ignore[arg-type]
        gxx=seen["gxx"][0],  # type: ignore[arg-type]
        ninja=seen["ninja"][0],  # type: ignore[arg-type]
        cxx_compilers=seen["cxx"][0] or (),  # type: ignore[arg-type]
        extensions=libstdcxx.installed_extensions(packages),
        neighbours=neighbours,
        flash_attn_providers=tuple(Provider(**p) for p in py["flash_attn"]["providers"]),
        flash_attn_origin=py["flash_attn"]["origin"],
        resources=_resources(view),
        env_vars=host.relevant_env(view),
        unknown=unknown,
    )


def _resources(view: host.HostView) -> Resources:
    folders = {
        "build": build_dir(),
        "cache": cache_dir(),
        "tmp": Path(os.environ.get("TMPDIR", "/tmp")),
    }
    return host.resources(view, folders)


_HOST_DETECTORS: dict[str, Callable[[host.HostView], tuple[object, str | None]]] = {
    "driver": host.nvidia_driver,
    "rocm": host.rocm,
    "hipcc": host.hipcc,
    "gcc": lambda v: host.compiler(v, "gcc", "CC"),
    "gxx": lambda v: host.compiler(v, "g++", "CXX"),
    "ninja": host.ninja,
    "cxx": libstdcxx.compilers,
}


def _probe_args(name: str, version: str) -> tuple[str, ...]:
    """The import probe's arguments for an installed kernel distribution: DIST INFO_FILE MODULE..."""
    info, modules = KERNEL_DISTS[name]
    if name == compat.DIST and compat.is_compat_version(version):
        modules = compat.PROBE_MODULES  # a compat has no compiled module; this proves it is ours
    return (name, info, *modules)


def _probe_neighbour(python: str, dist: Mapping[str, Any]) -> dict[str, Any]:
    info, modules = NEIGHBOUR_DISTS[dist["name"]]
    if not modules:
        return {"status": ImportStatus.OK.value}  # metadata only: nothing compiled to load
    return probe(python, "import", dist["name"], info, *modules)


def _python(raw: Mapping[str, Any]) -> PythonInfo:
    keys = (
        "executable",
        "version",
        "implementation",
        "abi_tag",
        "platform",
        "machine",
        "glibc",
        "prefix",
        "in_venv",
        "pip_version",
    )
    return PythonInfo(**{k: raw[k] for k in keys})


def _torch(raw: Mapping[str, Any], unknown: dict[str, str]) -> TorchInfo:
    log.debug("torch probe timings: %s", raw.get("timings"))
    if "error" in raw and "status" not in raw:  # the probe itself died: a crash on `import torch`
        unknown["torch"] = raw["error"]
        return TorchInfo(status=ImportStatus.BROKEN, error=raw["error"])
    status = ImportStatus(raw["status"])
    if status is not ImportStatus.OK:
        return TorchInfo(status=status, error=raw.get("error"))
    devices = tuple(
        Gpu(index=d["index"], name=d["name"], arch=_arch(d["arch"]), memory_mib=d["memory_mib"])
        for d in raw.get("devices", [])
    )
    return TorchInfo(
        status=status,
        version=raw["version"],
        location=raw.get("location"),
        cuda=CudaVersion.parse(raw["cuda"]) if raw.get("cuda") else None,
        hip=raw.get("hip"),
        cxx11_abi=raw.get("cxx11_abi"),
        cuda_available=raw.get("cuda_available"),
        cuda_error=raw.get("cuda_error"),
        devices=devices,
        arch_list=tuple(raw.get("arch_list", [])),
        cudnn=raw.get("cudnn"),
        triton_requirement=raw.get("triton_requirement"),
        sdpa=Sdpa(**raw["sdpa"]) if isinstance(raw.get("sdpa"), dict) else None,
    )


def _arch(text: str) -> Arch | None:
    try:
        return Arch.parse(text)
    except ValueError:
        return None


def _package(dist: Mapping[str, Any], raw: Mapping[str, Any]) -> PackageInfo:
    if "status" not in raw:
        return PackageInfo(
            name=dist["name"],
            version=dist["version"],
            location=dist["location"],
            import_status=ImportStatus.BROKEN,
            import_error=raw.get("error"),
            requires_torch=dist.get("requires_torch"),
        )
    return PackageInfo(
        name=dist["name"],
        version=dist["version"],
        location=dist["location"],
        import_status=ImportStatus(raw["status"]),
        import_error=raw.get("error"),
        build_info=dict(raw.get("build_info", {})),
        requires_torch=dist.get("requires_torch"),
        attention_op=raw.get("attention_op"),
    )
