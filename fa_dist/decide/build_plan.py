"""What `fa-dist build` will do, decided from facts alone (pure): recipe, variant, archs, jobs, version,
environment for the compiler, and whether a finished wheel can be reused."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fa_dist.decide import archs as archs_mod
from fa_dist.decide import jobs, knowledge, stable_abi
from fa_dist.decide.recipes import Kind, Recipe
from fa_dist.errors import ConfigError, EnvironmentBroken
from fa_dist.facts import libstdcxx, parsers
from fa_dist.model.environment import Environment, ImportStatus
from fa_dist.model.variant import Runtime, Variant
from fa_dist.model.versions import Arch, CudaVersion, TorchMinor
from fa_dist.model.wheel import WheelEntry


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    recipe: Recipe
    python: str
    python_tag: str
    version: str
    variant: Variant | None
    abi: stable_abi.Abi | None  # None: nothing compiled
    archs: archs_mod.ArchChoice | None
    jobs: jobs.JobPlan | None
    build_env: dict[str, str]
    build_key: str  # names the incremental build folder: same key, same objects
    source_digest: str
    notes: tuple[str, ...]


def choose_recipe(name: str, env: Environment, recipes: dict[str, Recipe]) -> Recipe:
    if name != "auto":
        if name not in recipes:
            raise ConfigError(
                f"no recipe named {name!r}", fix=f"use one of: auto, {', '.join(sorted(recipes))}"
            )
        return recipes[name]
    torch = env.torch
    if torch and torch.status is ImportStatus.OK and torch.cuda and "cuda" in recipes:
        return recipes["cuda"]
    if torch and torch.status is ImportStatus.OK and torch.hip and "rocm" in recipes:
        return recipes["rocm"]
    return recipes["triton"]


def plan(
    env: Environment,
    recipe: Recipe,
    *,
    arch_request: str,
    jobs_override: int | None,
    kernel_version: str,
    source_digest: str,
    ptx: str | None = None,
    abi_request: str = "auto",
) -> BuildPlan:
    if env.python is None:
        raise ConfigError("the environment snapshot has no Python facts")
    torch = env.torch
    if recipe.compiled and (
        torch is None or torch.status is not ImportStatus.OK or not torch.version
    ):
        raise EnvironmentBroken(
            "a compiled build needs torch importable in the target environment",
            fix="fa-dist doctor shows why torch does not import",
        )
    if torch and torch.version and TorchMinor.parse(torch.version) < recipe.min_torch:
        raise EnvironmentBroken(
            f"recipe {recipe.name!r} needs torch >= {recipe.min_torch}, found {torch.version}"
        )
    if not recipe.compiled:
        return _pure_plan(env.python.executable, recipe, kernel_version, source_digest)
    variant, abi, abi_why = _abi(_variant(env, recipe), recipe, abi_request)
    choice, build_env, notes = _toolchain(env, recipe, arch_request, ptx)
    notes = (abi_why, *notes)
    build_env, notes = _with_shared_libstdcxx(env, build_env, notes)
    job_plan = _jobs(env, jobs_override)
    build_env.update({"MAX_JOBS": str(job_plan.max_jobs)})
    if recipe.kind is Kind.CUDA:
        build_env["NVCC_APPEND_FLAGS"] = " ".join(
            filter(
                None,
                (env.env_vars.get("NVCC_APPEND_FLAGS", ""), f"--threads {job_plan.nvcc_threads}"),
            )
        )
    archs_key = "-".join(str(a) for a in choice.archs)
    # the glue's only Python is an empty module init: every compiled wheel is cp310-abi3
    return BuildPlan(
        recipe=recipe,
        python=env.python.executable,
        python_tag=stable_abi.LIMITED_API_TAG,
        version=f"{kernel_version}+{variant}",
        variant=variant,
        abi=abi,
        archs=choice,
        jobs=job_plan,
        build_env=build_env,
        build_key=f"{recipe.name}-{variant}-{stable_abi.LIMITED_API_TAG}-{archs_key}",
        source_digest=source_digest,
        notes=notes,
    )


def for_environment(env: Environment) -> tuple[Variant | None, str]:
    """The variant a compiled wheel needs to load into ``env``'s torch, or None with the reason."""
    torch = env.torch
    if torch is None or torch.status is not ImportStatus.OK or not torch.version:
        return None, "torch does not import in the target environment"
    abi = bool(torch.cxx11_abi)
    if torch.cuda:
        return Variant(Runtime.CUDA, torch.cuda, TorchMinor.parse(torch.version), abi), ""
    if torch.hip:
        hip = TorchMinor.parse(torch.hip)
        return Variant(
            Runtime.ROCM, CudaVersion(hip.major, hip.minor), TorchMinor.parse(torch.version), abi
        ), ""
    return None, f"torch {torch.version} is a CPU-only build: only the pure-Triton wheel applies"


def _variant(env: Environment, recipe: Recipe) -> Variant:
    """The variant a compiled build is for, refused when the recipe needs a newer runtime."""
    variant, why = for_environment(env)
    if variant is None:
        raise EnvironmentBroken(f"cannot build recipe {recipe.name!r}: {why}")
    if recipe.min_runtime is not None and variant.runtime_version < recipe.min_runtime:
        runtime = "ROCm" if recipe.kind is Kind.ROCM else "CUDA"
        raise EnvironmentBroken(
            f"recipe {recipe.name!r} needs {runtime} >= {recipe.min_runtime}, this torch is built for "
            f"{runtime} {variant.runtime_version}",
            fix=f"install a torch built for {runtime} {recipe.min_runtime} or newer "
            "(https://pytorch.org/get-started/locally/), or use the pure-Triton wheel: "
            "fa-dist build --recipe triton",
        )
    return variant


def _abi(variant: Variant, recipe: Recipe, request: str) -> tuple[Variant, stable_abi.Abi, str]:
    """The ABI to build for (and why); a stable-ABI build's variant names the oldest torch it serves."""
    abi, why = stable_abi.choose(request, torch=variant.torch, target=recipe.stable_abi_target)
    if abi is stable_abi.Abi.STABLE and recipe.stable_abi_target is not None:
        variant = replace(variant, torch=recipe.stable_abi_target, stable_abi=True)
    return variant, abi, why


def _pure_plan(python: str, recipe: Recipe, kernel_version: str, source_digest: str) -> BuildPlan:
    return BuildPlan(
        recipe=recipe,
        python=python,
        python_tag="py3",
        version=kernel_version,
        variant=None,
        abi=None,
        archs=None,
        jobs=None,
        build_env={},
        build_key="triton",
        source_digest=source_digest,
        notes=("pure Python + Triton: one py3-none-any wheel runs on every platform",),
    )


def _jobs(env: Environment, override: int | None) -> jobs.JobPlan:
    """MAX_JOBS from cores and free memory, or --jobs."""
    threads = _int(env.env_vars.get("NVCC_THREADS")) or 2
    if override is not None:
        if override < 1:
            raise ConfigError(f"--jobs {override}: must be at least 1")
        return jobs.JobPlan(max_jobs=override, nvcc_threads=threads, reason="--jobs")
    return jobs.recommend(
        cpus=env.resources.cpus,
        mem_available_mib=env.resources.mem_available_mib,
        nvcc_threads=threads,
    )


def _toolchain(
    env: Environment, recipe: Recipe, arch_request: str, ptx: str | None = None
) -> tuple[archs_mod.ArchChoice, dict[str, str], tuple[str, ...]]:
    gpus = [g.arch for g in (env.visible_gpus or (env.driver.gpus if env.driver else ())) if g.arch]
    if recipe.kind is Kind.ROCM:
        wanted = (
            [a for a in gpus if not a.is_nvidia]
            if arch_request == "native"
            else [
                Arch.parse(a)
                for a in (
                    arch_request.split(",") if arch_request != "all" else map(str, recipe.archs)
                )
            ]
        )
        missing = [a for a in wanted if a not in recipe.archs]
        if not wanted or missing:
            raise ConfigError(
                f"no buildable ROCm arch: wanted {', '.join(map(str, wanted)) or 'none visible'}, "
                f"recipe supports {', '.join(map(str, recipe.archs))}"
            )
        choice = archs_mod.ArchChoice(archs=tuple(wanted), ptx=None, notes=())
        return choice, {"PYTORCH_ROCM_ARCH": ";".join(map(str, wanted))}, ()
    if env.nvcc is None or not env.nvcc.version:
        raise EnvironmentBroken("no working nvcc", fix="see fa-dist doctor (check nvcc)")
    toolkit = CudaVersion.parse(env.nvcc.version)
    choice = archs_mod.select(
        arch_request,
        gpus=[g for g in gpus if g.is_nvidia],
        toolkit=toolkit,
        recipe_archs=recipe.archs,
        ptx=ptx,
    )
    build_env = {"TORCH_CUDA_ARCH_LIST": choice.torch_arch_list}
    notes = list(choice.notes)
    if env.nvcc.source in ("CUDA_HOME", "CUDA_PATH"):
        build_env["CUDA_HOME"] = env.env_vars[env.nvcc.source]
    else:
        root = cuda_root(env.nvcc.path)
        if root is None:
            raise EnvironmentBroken(
                f"found {env.nvcc.path} but no CUDA headers (include/cuda_runtime.h) next to it "
                "or in /usr/local/cuda",
                fix="export CUDA_HOME=<the toolkit folder that has include/cuda_runtime.h>",
            )
        build_env["CUDA_HOME"] = root
        notes.append(f"CUDA_HOME={root} (the toolkit of {env.nvcc.path})")
    limit = knowledge.gcc_max_for_nvcc(toolkit)
    gxx = env.gxx
    if limit and gxx and (parsers.major(gxx.version) or 0) > limit:
        notes.append(f"g++ {gxx.version} is newer than nvcc {toolkit} accepts (<= {limit})")
    return choice, build_env, tuple(notes)


def _with_shared_libstdcxx(
    env: Environment, build_env: dict[str, str], notes: tuple[str, ...]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Link with a compiler whose libstdc++ is shared (issue #10), or refuse before compiling."""
    cxx = libstdcxx.choose(env.cxx_compilers)
    if cxx.problem:
        raise EnvironmentBroken(
            f"no C++ compiler here links a shared libstdc++: {cxx.problem}",
            fix=libstdcxx.fix_for(env.cxx_compilers),
        )
    return {**build_env, **cxx.overrides}, (*notes, cxx.note) if cxx.note else notes


def cuda_root(nvcc_path: str, candidates: Sequence[str] = ("/usr/local/cuda",)) -> str | None:
    """The toolkit folder for an nvcc: the one with include/cuda_runtime.h. nvcc on PATH may be a
    wrapper script (/usr/local/bin/nvcc: exec /usr/local/cuda-13.0/bin/nvcc), where "two folders up"
    is wrong, so the script's exec line is read too."""
    nvcc = Path(nvcc_path)
    roots = [nvcc.resolve().parent.parent]
    try:
        head = nvcc.read_bytes()[:4096]
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        roots += [Path(m[1].decode()) for m in re.finditer(rb"(/[\w./+-]+)/bin/nvcc", head)]
    roots += [Path(c) for c in candidates]
    for root in roots:
        if (root / "include" / "cuda_runtime.h").is_file():
            return str(root)
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def reusable(plan_: BuildPlan, entries: Iterable[WheelEntry]) -> WheelEntry | None:
    """A finished wheel built from the same sources for the same target, if the wheelhouse has one."""
    want_archs = tuple(str(a) for a in plan_.archs.archs) if plan_.archs else ()
    for entry in entries:
        if (
            entry.recipe == plan_.recipe.name
            and entry.version == plan_.version
            and entry.source_digest == plan_.source_digest
            and entry.archs == want_archs
            and entry.python in (plan_.python_tag, "py3")
        ):
            return entry
    return None


def stale(built_from: str, carried: str | None) -> str | None:
    """Why a wheel fa-dist built is not to be installed (None: it may be): the manifest says it was
    built from other kernel sources than the ones this fa-dist carries, as after an upgrade of fa-dist
    whose kernel version stayed the same. Unknown on either side (an old manifest, no sources): kept."""
    if not built_from or not carried or built_from == carried:
        return None
    return (
        f"built from other kernel sources (digest {built_from}) than this fa-dist carries "
        f"({carried}): stale, not installed (a build makes a fresh one; wheels given with "
        "--find-links are taken as they are)"
    )


# not sources: build outputs, caches, a checkout's own precompiled Triton kernels (`fa-dist warm`)
DIGEST_SKIP = (
    "build",
    "dist",
    "__pycache__",
    "_precompiled",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
# written by `python -m build --sdist` into the bundled sdist's root, absent from a checkout's kernels/
SDIST_METADATA = ("PKG-INFO", "setup.cfg")


def source_digest(root: Path, *, skip: Sequence[str] = DIGEST_SKIP) -> str:
    """sha256 over the kernel sources' paths and bytes: a wheel is reused only for the same sources.
    A checkout's kernels/ and the same sources unpacked from fa-dist's bundled sdist give one digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in SDIST_METADATA or any(
            part in skip or part.endswith(".egg-info") for part in rel.split("/")
        ):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def precompile_skip(env: Environment, plan_: BuildPlan) -> str | None:
    """Why a build cannot precompile its Triton kernels into the wheel here, or None when it can: that
    needs triton and a visible GPU the wheel is built for (the kernels are compiled by running them)."""
    if env.triton_version is None:
        return "no triton in the target environment"
    gpus = [g.arch for g in env.visible_gpus if g.arch is not None]
    if not gpus:
        return "no GPU visible to the target's torch"
    if plan_.archs is not None:
        built = {(a.family, a.major, a.minor) for a in plan_.archs.archs}
        if any((g.family, g.major, g.minor) not in built for g in gpus):
            return "the wheel is not built for every GPU here"
    return None
