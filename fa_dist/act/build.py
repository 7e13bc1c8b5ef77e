"""Acting on a BuildPlan: write the build config, run pip's wheel build under the target interpreter
(no build isolation: torch must be the installed one), feed ninja's [n/m] to a progress callback, keep
the whole log, name the cause from the log on failure, and put the wheel into the wheelhouse."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fa_dist._version import __version__
from fa_dist.act import wheelhouse
from fa_dist.decide import buildlog, stable_abi
from fa_dist.errors import BuildFailed
from fa_dist.facts import libstdcxx
from fa_dist.model.environment import Environment
from fa_dist.model.wheel import WheelEntry
from fa_dist.paths import build_dir
from fa_dist.reporter import Progress

if TYPE_CHECKING:  # types only: no import at run time, so no layer
    from fa_dist.decide.build_plan import BuildPlan

NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def build_config(plan: BuildPlan, env: Environment, temp: Path) -> dict[str, object]:
    ext = plan.recipe.extension
    assert ext is not None and plan.variant is not None and plan.archs is not None
    torch = env.torch
    stable = plan.abi is stable_abi.Abi.STABLE
    info = {
        "fa_kernels": plan.version,
        "recipe": plan.recipe.name,
        "variant": str(plan.variant),
        "abi": plan.abi.value if plan.abi else "",
        # the oldest torch a stable-ABI build serves; "torch" below is the one it was compiled against
        "torch_target": str(plan.variant.torch) if stable else "",
        "torch": torch.version if torch else "",
        "cuda": str(torch.cuda) if torch and torch.cuda else "",
        "hip": torch.hip or "" if torch else "",
        "cxx11_abi": str(plan.variant.cxx11_abi),
        "python": plan.python_tag,
        "archs": " ".join(str(a) for a in plan.archs.archs),
        "ptx": str(plan.archs.ptx or ""),
        "nvcc": env.nvcc.version or "" if env.nvcc else "",
        "gcc": env.gxx.version or "" if env.gxx else "",
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "built_by": f"fa-dist {__version__}",
    }
    return {
        "name": ext.name,
        "sources": list(ext.sources),
        "include_dirs": list(ext.include_dirs),
        "cxx_flags": [
            *ext.cxx_flags,
            *([stable_abi.target_flag(plan.variant.torch)] if stable else []),
        ],
        "device_flags": list(ext.device_flags),
        # setup.py: CUDAExtension(py_limited_api=True) and bdist_wheel --py-limited-api cp310
        "py_limited_api": stable_abi.LIMITED_API_TAG,
        "version": plan.version,
        "build_temp": str(temp),
        "build_info": info,
        # TORCH_CUDA_ARCH_LIST / PYTORCH_ROCM_ARCH, MAX_JOBS, CUDA_HOME...: setup.py applies them, so a
        # build driven by another frontend (cibuildwheel) compiles exactly what `fa-dist build` would
        "env": dict(plan.build_env),
    }


@dataclass(frozen=True, kw_only=True)
class Compiled:
    """pip's wheel, still in the build folder, and what the compile did."""

    wheel: Path
    log: Path
    reused: str  # "objects: compiled k of n sources, reused the rest" or ""


def compile_wheel(
    plan: BuildPlan, env: Environment, *, kernels: Path, clean: bool, progress: Progress
) -> Compiled:
    """Compile and package the kernels with pip's wheel build in the target interpreter."""
    temp = build_dir() / plan.build_key
    if clean and temp.exists():
        shutil.rmtree(temp)
    temp.mkdir(parents=True, exist_ok=True)
    log_path = temp / "build.log"
    extra = dict(plan.build_env)
    if plan.recipe.compiled:
        config = temp / "config.json"
        config.write_text(json.dumps(build_config(plan, env, temp / "objects"), indent=1))
        extra["FA_KERNELS_BUILD_CONFIG"] = str(config)
    staged = stage_sources(kernels, temp / "src")
    out = temp / "dist"
    shutil.rmtree(out, ignore_errors=True)
    argv = [plan.python, "-m", "pip", "wheel", str(staged), "--no-deps", "--no-build-isolation"]
    argv += ["--no-cache-dir", "-v", "-w", str(out)]
    steps = _stream(argv, {**os.environ, **extra}, log_path, progress)
    wheels = list(out.glob("*.whl")) if out.is_dir() else []
    if steps.returncode != 0 or len(wheels) != 1:
        raise _failure(log_path, steps.returncode)
    _refuse_static_runtime(wheels[0], log_path)
    sources = len(plan.recipe.extension.sources) if plan.recipe.extension else 0
    # ninja numbers only the steps it has to run: [n/m] with m < sources means objects were reused
    reused = (
        f"objects: compiled {steps.total} of {sources} sources, reused the rest"
        if plan.recipe.compiled and steps.total < sources
        else ""
    )
    return Compiled(wheel=wheels[0], log=log_path, reused=reused)


def into_wheelhouse(plan: BuildPlan, wheel: Path, folder: Path) -> tuple[Path, WheelEntry]:
    """Move the wheel into the wheelhouse and record it (with its sha256) in the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wheel.name
    shutil.move(str(wheel), target)
    entry = wheelhouse.with_hash(_entry(plan, target), target)
    wheelhouse.add(folder, entry)
    return target, entry


# _precompiled: Triton kernels a checkout's `fa-dist warm` stored, for its own machine; a build adds its own
SKIP_PARTS = ("build", "dist", "__pycache__", "_precompiled")


def _skipped(rel: Path) -> bool:
    return any(p in SKIP_PARTS or p.endswith(".egg-info") for p in rel.parts)


def stage_sources(kernels: Path, staged: Path) -> Path:
    """Mirror kernels/ into a build-owned folder: pip's in-tree build litters its source folder, and the
    same absolute paths every time keep ninja's incremental state valid. Unchanged files keep their
    mtime (copy2 only what differs), so ninja recompiles only what changed."""
    wanted = set()
    for src in kernels.rglob("*"):
        rel = src.relative_to(kernels)
        if not src.is_file() or _skipped(rel):
            continue
        wanted.add(rel)
        dest = staged / rel
        if not dest.is_file() or dest.read_bytes() != src.read_bytes():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    for old in staged.rglob("*"):
        rel = old.relative_to(staged)
        if old.is_file() and rel not in wanted and not _skipped(rel):
            old.unlink()
    return staged


@dataclass
class _Streamed:
    returncode: int
    total: int


def _stream(argv: list[str], env: dict[str, str], log_path: Path, progress: Progress) -> _Streamed:
    """Run the build, every line to the log, ninja's [n/m] to the progress callback."""
    total = 0
    with log_path.open("w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            m = NINJA_STEP.match(line.strip())
            if m:
                step, total = int(m[1]), int(m[2])
                progress(step, total)
        code = proc.wait()
    return _Streamed(returncode=code, total=total)


def _refuse_static_runtime(wheel: Path, log_path: Path) -> None:
    """The built extension must link the shared libstdc++: a static copy turns its errors into
    crashes (issue #10). Such a wheel never reaches the wheelhouse."""
    problem = libstdcxx.wheel_problem(wheel)
    if problem:
        raise BuildFailed(
            f"the built extension carries its own static libstdc++: {problem}; its failing checks would "
            f"crash the process (SIGSEGV) instead of raising, so the wheel was not kept\n  full log: "
            f"{log_path}",
            fix="build with a C++ compiler that has a shared libstdc++: export CXX=g++ CC=gcc "
            "(see fa-dist doctor, check cxx-runtime)",
        )


def _failure(log_path: Path, code: int) -> BuildFailed:
    text = log_path.read_text(errors="replace")
    cause = buildlog.classify(text)
    if cause is None:
        shown = "\n    ".join(buildlog.tail(text))
        return BuildFailed(
            f"the build failed (exit {code}); last lines of {log_path}:\n    {shown}",
            fix=f"read the full log: {log_path}",
        )
    shown = "\n    ".join(cause.lines)
    return BuildFailed(
        f"the build failed: {cause.title}\n    {shown}\n  full log: {log_path}", fix=cause.fix
    )


def _entry(plan: BuildPlan, wheel: Path) -> WheelEntry:
    parts = wheel.name[:-4].split("-")  # name-version-python-abi-platform
    return WheelEntry(
        filename=wheel.name,
        sha256="",
        size=0,
        name="fa-kernels",
        version=plan.version,
        variant=str(plan.variant) if plan.variant else None,
        archs=tuple(str(a) for a in plan.archs.archs) if plan.archs else (),
        python=parts[-3],
        platform=parts[-1],
        recipe=plan.recipe.name,
        source_digest=plan.source_digest,
        extra={"ptx": str(plan.archs.ptx)} if plan.archs and plan.archs.ptx else {},
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
