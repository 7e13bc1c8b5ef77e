"""Gather every fact into one Environment: the target interpreter's (through the probe) and the host's."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fa_dist import subproc
from fa_dist._version import __version__
from fa_dist.errors import ProbeFailed
from fa_dist.facts import factcache, host, interpreter, libstdcxx, torch_files
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
# threads, each waiting on a subprocess or a file: the host detectors, then the target's probes
WORKERS = 8

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


PART = "FA_DIST_PART "


def probe_parts(
    python: str, specs: Sequence[Sequence[str]], timeout: float = 120.0
) -> dict[str, Any]:
    """torch's facts and each kernel package's import in ONE target process (probe section
    "torch+import") -> {"torch": answer, DIST: answer, ...}; a part missing (the process crashed or hung
    before printing it) is left out, for the caller to probe on its own."""
    args: list[str] = []
    for spec in specs:
        args += [*(["--"] if args else []), *spec]
    started = time.perf_counter()
    out = subproc.run([python, str(PROBE), "torch+import", *args], timeout=timeout)
    log.debug("probe torch+import %s: %.2fs", " ".join(args), time.perf_counter() - started)
    parts: dict[str, Any] = {}
    for line in out.stdout.splitlines():
        if line.startswith(PART):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                item = json.loads(line[len(PART) :])
                parts[str(item["key"])] = item["answer"]
    return parts


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
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    sdpa: bool = False,
    refresh: bool = False,
) -> Environment:
    """Observe the machine and the target interpreter (default: this one); with ``sdpa``, also which
    torch SDPA backends work here (a probe of its own that puts tensors on the GPU). The facts that
    need ``import torch`` come from the facts cache when the target is unchanged (``refresh``: never)."""
    python = python or sys.executable
    view = host.HostView(
        env=dict(env if env is not None else os.environ), extra_bin=(str(Path(python).parent),)
    )
    # the host detectors run while the target is probed: every one is a subprocess or a file read
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        host_f = {name: pool.submit(fn, view) for name, fn in _HOST_DETECTORS.items()}
        nvcc_f = pool.submit(host.nvcc, view)
        resources_f = pool.submit(_resources, view)
        interpreter.require(python)  # before the probe: a shell or an old Python cannot run it
        py = _probe_ran(python, probe(python, "python", timeout=60))
        answers = factcache.cached(
            factcache.identity(python, py, view.env),
            lambda: _import_answers(python, py, pool, sdpa=sdpa),
            lambda: probe(python, "sdpa"),
            sdpa=sdpa,
            refresh=refresh,
        )
        seen = {name: f.result() for name, f in host_f.items()}
        nvcc_found = nvcc_f.result()
        resources = resources_f.result()
    return _environment(py, answers, seen, nvcc_found, resources, view)


def _import_answers(
    python: str, py: Mapping[str, Any], pool: ThreadPoolExecutor, *, sdpa: bool
) -> dict[str, Any]:
    """Every probe that imports torch in the target, run at once: torch's facts and our kernel packages'
    imports share one process (one torch import), the neighbours and SDPA each have their own; whatever
    the shared process did not answer (it crashed) is probed again alone, so a crash costs one answer."""
    sdpa_f = pool.submit(probe, python, "sdpa") if sdpa else None
    near_f = {d["name"]: pool.submit(_probe_neighbour, python, d) for d in py["neighbours"]}
    specs = {d["name"]: _probe_args(d["name"], d["version"]) for d in py["dists"]}
    parts = probe_parts(python, list(specs.values()))
    alone = {
        name: pool.submit(probe, python, "import", *spec)
        for name, spec in specs.items()
        if name not in parts
    }
    torch_answer = parts.get("torch") or probe(python, "torch")
    answers: dict[str, Any] = {
        "torch": torch_answer,
        "packages": {
            name: parts[name] if name in parts else alone[name].result() for name in specs
        },
        "neighbours": {name: f.result() for name, f in near_f.items()},
    }
    if sdpa_f is not None:
        answers["sdpa"] = sdpa_f.result()
    return answers


def _environment(
    py: Mapping[str, Any],
    answers: Mapping[str, Any],
    seen: Mapping[str, tuple[Any, str | None]],
    nvcc_found: tuple[Any, str | None, tuple[str, ...]],
    resources: Resources,
    view: host.HostView,
) -> Environment:
    nvcc_tool, nvcc_why, nvcc_other = nvcc_found
    unknown = {name: why for name, (_, why) in seen.items() if why}
    unknown.update({"nvcc": nvcc_why} if nvcc_why else {})
    torch_raw = _torch_raw(py, answers["torch"])
    _merge_sdpa(torch_raw, answers.get("sdpa"), unknown)
    torch = _torch(torch_raw, unknown)
    packages = tuple(_package(d, answers["packages"][d["name"]]) for d in py["dists"])
    return Environment(
        fa_dist_version=__version__,
        captured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        os=OsInfo(system=platform.system(), release=platform.release(), machine=platform.machine()),
        python=_python(py),
        torch=torch,
        triton_version=py.get("triton_version"),
        packages=packages,
        driver=seen["driver"][0],
        rocm=seen["rocm"][0],
        nvcc=nvcc_tool,
        nvcc_elsewhere=nvcc_other,
        hipcc=seen["hipcc"][0],
        gcc=seen["gcc"][0],
        gxx=seen["gxx"][0],
        ninja=seen["ninja"][0],
        cxx_compilers=seen["cxx"][0] or (),
        extensions=libstdcxx.installed_extensions(packages),
        neighbours=tuple(_package(d, answers["neighbours"][d["name"]]) for d in py["neighbours"]),
        flash_attn_providers=tuple(Provider(**p) for p in py["flash_attn"]["providers"]),
        flash_attn_origin=py["flash_attn"]["origin"],
        resources=resources,
        env_vars=host.relevant_env(view),
        unknown=unknown,
    )


def _torch_raw(py: Mapping[str, Any], imported: Mapping[str, Any]) -> dict[str, Any]:
    """The import's answer, checked against the build facts torch's files give without importing
    it: they agree (the cache is keyed on those files); the import is the truth where they do not."""
    raw = dict(imported)
    if raw.get("status") == "ok" and py.get("torch_dir") and log.isEnabledFor(logging.DEBUG):
        files = torch_files.read(Path(py["torch_dir"]))
        drift = {
            k: (raw.get(k), v) for k, v in files.items() if k in FILE_FACTS and raw.get(k) != v
        }
        if drift:
            log.debug("torch's import and its files disagree (the import counts): %s", drift)
    return raw


# what torch_files reads, by the torch probe's names for them
FILE_FACTS = ("version", "cuda", "hip", "cxx11_abi")


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
        precompiled={str(k): int(v) for k, v in dict(raw.get("precompiled") or {}).items()},
        fmha_ops={str(k): str(v) for k, v in dict(raw.get("fmha_ops") or {}).items()},
    )
