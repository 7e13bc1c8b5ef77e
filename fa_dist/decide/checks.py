"""Doctor: pure checks over an Environment. Facts in, findings out; nothing here looks at the machine.

Each finding says what was seen (evidence), why it matters, and the exact command that fixes it.
A finding may block a route: installing a prebuilt compiled wheel, or building from source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from fa_dist.decide import jobs, knowledge, neighbours
from fa_dist.decide.finding import BOTH as BOTH
from fa_dist.decide.finding import SOURCE_ONLY as SOURCE_ONLY
from fa_dist.decide.finding import Finding as Finding
from fa_dist.decide.finding import Route as Route
from fa_dist.decide.finding import Severity as Severity
from fa_dist.decide.finding import ok as _ok
from fa_dist.decide.finding import pip as _pip
from fa_dist.decide.precompiled import check_precompiled
from fa_dist.facts import libstdcxx, parsers
from fa_dist.model import compat
from fa_dist.model.environment import Environment, Gpu, ImportStatus, PackageInfo, TorchInfo
from fa_dist.model.versions import Arch, ArchFamily, CudaVersion


def _gpus(env: Environment) -> tuple[Gpu, ...]:
    """GPUs torch sees, else the ones the driver sees (torch may be missing or CPU-only)."""
    if env.visible_gpus:
        return env.visible_gpus
    return env.driver.gpus if env.driver else ()


def _torch_ok(env: Environment) -> TorchInfo | None:
    return env.torch if env.torch and env.torch.status is ImportStatus.OK else None


# -- torch -------------------------------------------------------------------------------------

IMPORT_ERROR_KINDS: tuple[tuple[str, str, str], ...] = (
    # (regex over the error text, kind, explanation)
    (r"No module named '?torch'?$", "missing", "torch is not installed in this interpreter"),
    (
        r"lib(cudart|cublas\w*|cudnn\w*|nccl|nvrtc|cusparse\w*|cufft|curand|nvJitLink)[^ ]*\.so",
        "missing-cuda-lib",
        "a CUDA library torch links against cannot be found: the nvidia-* pip packages torch depends "
        "on are missing, or LD_LIBRARY_PATH points at another CUDA",
    ),
    (
        r"lib(c10|torch)\w*\.so: cannot open shared object",
        "torch-lib",
        "the binary links against a torch library this torch does not have (built for another torch build)",
    ),
    (
        r"undefined symbol",
        "undefined-symbol",
        "a native library was built against a different torch (version or C++ ABI) than the one "
        "that is loaded",
    ),
    (
        r"GLIBC(XX)?_[\d.]+' not found",
        "glibc",
        "the binary needs a newer C/C++ runtime than this system has",
    ),
    (r"NumPy|numpy", "numpy", "an extension was compiled for a different NumPy major version"),
    (r"killed by signal|Segmentation", "crash", "the interpreter crashed inside native code"),
)


def classify_import_error(text: str) -> tuple[str, str]:
    """(kind, explanation) for an import failure's text."""
    for pattern, kind, explanation in IMPORT_ERROR_KINDS:
        if re.search(pattern, text):
            return kind, explanation
    return "other", "importing raised an unexpected error"


def check_torch(env: Environment) -> Iterator[Finding]:
    torch = env.torch
    if torch is None or torch.status is ImportStatus.MISSING:
        yield Finding(
            id="torch-import",
            severity=Severity.ERROR,
            title="torch is not installed",
            evidence=(
                torch.error if torch and torch.error else "no torch in the target interpreter"
            ),
            why="every kernel runs through torch; nothing can be installed or built without it",
            fix=_pip(env, f"install torch --index-url {_best_torch_index(env)}"),
            blocks=BOTH,
        )
        return
    if torch.status is ImportStatus.BROKEN:
        kind, why = classify_import_error(torch.error or "")
        yield Finding(
            id="torch-import",
            severity=Severity.ERROR,
            title=f"torch fails to import ({kind})",
            evidence=torch.error or "unknown error",
            why=why,
            fix=_pip(env, f"install --force-reinstall torch --index-url {_best_torch_index(env)}"),
            blocks=BOTH,
        )
        return
    build = (
        f"CUDA {torch.cuda}" if torch.cuda else (f"HIP {torch.hip}" if torch.hip else "CPU-only")
    )
    yield _ok(
        "torch-import",
        "torch imports",
        f"torch {torch.version} ({build}, C++11 ABI={int(bool(torch.cxx11_abi))})",
    )


def _best_torch_index(env: Environment) -> str:
    """PyTorch's index for the newest CUDA build this driver can run (cu130 when unknown)."""
    driver_cuda = env.driver.cuda if env.driver else None
    candidates = [
        c for c in knowledge.PYTORCH_CUDA_BUILDS if driver_cuda is None or c <= driver_cuda
    ]
    if env.driver is None and env.rocm is not None:
        return "https://download.pytorch.org/whl/rocm6.4"
    if env.driver is None:
        return "https://download.pytorch.org/whl/cpu"
    return knowledge.pytorch_index_for(
        max(candidates) if candidates else min(knowledge.PYTORCH_CUDA_BUILDS)
    )


def check_torch_cpu_only(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if not torch or torch.cuda or torch.hip:
        return
    machine_gpus = env.driver.gpus if env.driver else ()
    if env.driver or (env.rocm and env.rocm.gfx):
        seen = ", ".join(g.name for g in machine_gpus) or (
            f"ROCm GPUs {', '.join(env.rocm.gfx)}" if env.rocm else "a GPU driver"
        )
        yield Finding(
            id="torch-cpu-only",
            severity=Severity.ERROR,
            title="torch is a CPU-only build on a GPU machine",
            evidence=f"torch {torch.version} has no CUDA/HIP; the machine has {seen}",
            why="a CPU build of torch cannot launch any GPU kernel",
            fix=_pip(
                env,
                f"install --force-reinstall torch=={_public(torch.version)} "
                f"--index-url {_best_torch_index(env)}",
            ),
            blocks=BOTH,
        )


def _public(version: str | None) -> str:
    return (version or "").split("+")[0]


def check_driver(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if not torch or not torch.cuda or not env.driver:
        return
    need, driver = torch.cuda, env.driver
    floor = knowledge.DRIVER_FLOOR_BY_CUDA_MAJOR.get(need.major)
    ga = knowledge.DRIVER_GA_BY_CUDA.get(need)
    evidence = (
        f"driver {driver.version} (supports CUDA {driver.cuda or '?'}); "
        f"torch {torch.version} needs CUDA {need}"
    )
    fix = (
        f"upgrade the NVIDIA driver to >= {ga or floor}, or install a torch built for the CUDA "
        f"this driver runs: {_pip(env, f'install torch=={_public(torch.version)} --index-url {_best_torch_index(env)}')}"
    )
    too_old = (
        driver.cuda.major < need.major
        if driver.cuda
        else floor is not None and _vtuple(driver.version) < _vtuple(floor)
    )
    if too_old:
        yield Finding(
            id="driver",
            severity=Severity.ERROR,
            title="NVIDIA driver too old for torch's CUDA",
            evidence=evidence,
            why=f"CUDA {need.major}.x needs a driver >= {floor}",
            fix=fix,
            blocks=BOTH,
        )
    elif driver.cuda and driver.cuda < need:
        yield Finding(
            id="driver",
            severity=Severity.WARNING,
            title="driver older than torch's CUDA minor",
            evidence=evidence,
            why="runs under minor-version compatibility, but PTX newer than the driver cannot be "
            "JIT-compiled: kernels must carry real SASS for this GPU",
            fix=fix,
        )
    else:
        yield _ok("driver", "NVIDIA driver new enough", evidence)


def _vtuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


# -- GPUs --------------------------------------------------------------------------------------

HIDING_VALUES = ("", "-1", "none", "void")


def check_gpu_visible(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    driver_gpus = env.driver.gpus if env.driver else ()
    has_gpu_stack = env.driver is not None or bool(env.rocm and env.rocm.gfx)
    if not has_gpu_stack:
        yield Finding(
            id="gpu-visible",
            severity=Severity.WARNING,
            title="no GPU on this machine",
            evidence=f"no NVIDIA driver ({env.unknown.get('driver', 'not found')}); no ROCm",
            why="compiled kernels cannot run; the Triton kernels run only under the CPU interpreter "
            "(TRITON_INTERPRET=1), for tests",
            fix="run on a machine with an NVIDIA (sm_75+) or AMD Instinct GPU",
            blocks=BOTH,
        )
        return
    if not torch or not (torch.cuda or torch.hip):
        return  # torch-import / torch-cpu-only already explain it
    if torch.devices:
        names = ", ".join(f"{g.index}: {g.name} ({g.arch})" for g in torch.devices)
        yield _ok("gpu-visible", "torch sees the GPU(s)", names)
        return
    visible = env.env_vars.get("CUDA_VISIBLE_DEVICES", env.env_vars.get("HIP_VISIBLE_DEVICES"))
    count = f"{len(driver_gpus)} GPU(s)" if driver_gpus else "the GPU(s)"
    if visible is not None and visible.strip().lower() in HIDING_VALUES:
        yield Finding(
            id="gpu-visible",
            severity=Severity.ERROR,
            title="CUDA_VISIBLE_DEVICES hides every GPU",
            evidence=f"CUDA_VISIBLE_DEVICES={visible!r}; the driver sees {count}, torch sees none",
            why="torch.cuda.is_available() is False, so no kernel can run and the arch cannot be detected",
            fix="unset CUDA_VISIBLE_DEVICES   # or: export CUDA_VISIBLE_DEVICES=0",
            blocks=BOTH,
        )
        return
    detail = torch.cuda_error or "torch.cuda.is_available() returned False"
    extra = f" with CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    yield Finding(
        id="gpu-visible",
        severity=Severity.ERROR,
        title="torch cannot use the GPU",
        evidence=f"the driver sees {count}{extra}; torch: {detail}",
        why="no kernel can run on the device",
        fix=(
            "export CUDA_VISIBLE_DEVICES=0   # list indices the driver shows in nvidia-smi"
            if visible
            else "run nvidia-smi: if it fails, reinstall or reload the NVIDIA driver"
        ),
        blocks=BOTH,
    )


def check_gpu_arch(env: Environment) -> Iterator[Finding]:
    gpus = [g for g in _gpus(env) if g.arch and g.arch.is_nvidia]
    for gpu in gpus:
        arch = gpu.arch
        assert arch is not None
        evidence = f"GPU {gpu.index}: {gpu.name} is {arch}"
        if arch < knowledge.MIN_ARCH_TRITON_BACKEND:
            yield Finding(
                id="gpu-arch",
                severity=Severity.ERROR,
                title=f"{arch} is too old for any backend",
                evidence=evidence,
                why="the CUDA kernels need sm_80+, the Triton kernels sm_75+",
                fix="use an Ampere (sm_80) or newer GPU; fall back to torch's SDPA meanwhile",
                blocks=BOTH,
            )
        elif arch < knowledge.MIN_ARCH_CUDA_BACKEND:
            yield Finding(
                id="gpu-arch",
                severity=Severity.WARNING,
                title=f"{arch}: no CUDA backend, Triton backend only",
                evidence=evidence,
                why="FlashAttention-class CUDA kernels use sm_80 instructions (cp.async, bf16 mma); "
                "the pure-Triton wheel still runs here",
                fix="fa-dist install picks the pure-Triton wheel on this GPU",
                blocks=BOTH,
            )
        else:
            yield _ok("gpu-arch", f"{arch} supports every backend", evidence)


def torch_runs_on(arch: Arch, arch_list: Iterable[str]) -> bool:
    """Whether torch's compiled list covers ``arch``: SASS of the same major and a minor <= it
    (no 'a'/'f' suffix), or PTX (compute_XY) of any arch <= it, which the driver JIT-compiles."""
    for entry in arch_list:
        try:
            have = Arch.parse(entry)
        except ValueError:
            continue
        if entry.startswith("compute_") and have.base <= arch.base:
            return True
        if not have.suffix and have.major == arch.major and have.minor <= arch.minor:
            return True
    return False


def check_torch_arch_list(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if not torch or not torch.arch_list or not torch.cuda:
        return
    for gpu in torch.devices:
        if gpu.arch and gpu.arch.is_nvidia and not torch_runs_on(gpu.arch, torch.arch_list):
            yield Finding(
                id="torch-arch-list",
                severity=Severity.ERROR,
                title=f"this torch has no kernels for {gpu.arch}",
                evidence=f"torch {torch.version} was built for {' '.join(torch.arch_list)}",
                why="torch itself fails with 'no kernel image is available for execution on the device'",
                fix=_pip(
                    env, f"install --force-reinstall torch --index-url {_best_torch_index(env)}"
                ),
                blocks=BOTH,
            )


# -- toolchain (source builds) -----------------------------------------------------------------


def check_nvcc(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if torch and torch.hip:
        return
    want = torch.cuda if torch and torch.cuda else None
    toolkit = f"CUDA {want.major}.{want.minor}" if want else "the CUDA toolkit"
    install = (
        f"apt-get install cuda-toolkit-{want.major}-{want.minor}   # NVIDIA's apt repo; or: "
        f"conda install -c nvidia cuda-nvcc={want}"
        if want
        else "install the CUDA toolkit"
    )
    if env.nvcc is None:
        why_unseen = env.unknown.get("nvcc", "not found")
        cuda_home_wrong = why_unseen.startswith(("CUDA_HOME=", "CUDA_PATH="))
        if cuda_home_wrong:
            var = why_unseen.split("=", 1)[0]
            fix = (
                f"export {var}={_cuda_root(env.nvcc_elsewhere[0])}"
                if env.nvcc_elsewhere
                else f"unset {var}; {install}"
            )
            yield Finding(
                id="nvcc",
                severity=Severity.WARNING,
                title=f"{var} points at no CUDA toolkit",
                evidence=why_unseen,
                why="torch's build uses $" + var + " first and fails there",
                fix=fix,
                blocks=SOURCE_ONLY,
            )
        else:
            yield Finding(
                id="nvcc",
                severity=Severity.WARNING,
                title="nvcc not found: no source builds",
                evidence=why_unseen,
                why=f"compiling the CUDA kernels needs nvcc from {toolkit}; prebuilt wheels still work",
                fix=f"{install}; then export CUDA_HOME=/usr/local/cuda-{want or 'X.Y'}",
                blocks=SOURCE_ONLY,
            )
        return
    if not env.nvcc.ok or not env.nvcc.version:
        yield Finding(
            id="nvcc",
            severity=Severity.WARNING,
            title="nvcc does not run",
            evidence=env.nvcc.error or f"{env.nvcc.path} printed no version",
            why="source builds need a working nvcc",
            fix=f"{install}",
            blocks=SOURCE_ONLY,
        )
        return
    yield _ok(
        "nvcc", "nvcc found", f"{env.nvcc.path} (CUDA {env.nvcc.version}, via {env.nvcc.source})"
    )
    if want:
        yield from _nvcc_vs_torch(env, CudaVersion.parse(env.nvcc.version), want, install)


def _cuda_root(nvcc_path: str) -> str:
    return nvcc_path.rsplit("/bin/nvcc", 1)[0]


def _nvcc_vs_torch(
    env: Environment, nvcc: CudaVersion, want: CudaVersion, install: str
) -> Iterator[Finding]:
    evidence = (
        f"nvcc {nvcc} vs torch {env.torch.version if env.torch else '?'} built with CUDA {want}"
    )
    if nvcc.major != want.major:
        yield Finding(
            id="nvcc-torch-cuda",
            severity=Severity.WARNING,
            title="nvcc's CUDA major differs from torch's",
            evidence=evidence,
            why="torch.utils.cpp_extension refuses: 'The detected CUDA version mismatches the version "
            "that was used to compile PyTorch'",
            fix=install,
            blocks=SOURCE_ONLY,
        )
    elif nvcc.minor != want.minor:
        yield Finding(
            id="nvcc-torch-cuda",
            severity=Severity.INFO,
            title="nvcc's CUDA minor differs from torch's",
            evidence=evidence,
            why="allowed (torch warns); the extension runs on drivers for either minor",
        )
    else:
        yield _ok("nvcc-torch-cuda", "nvcc matches torch's CUDA", evidence)


def check_host_compiler(env: Environment) -> Iterator[Finding]:
    if not env.nvcc or not env.nvcc.version:
        return
    nvcc = CudaVersion.parse(env.nvcc.version)
    limit = knowledge.gcc_max_for_nvcc(nvcc)
    gxx = env.gxx or env.gcc
    if gxx is None or not gxx.ok:
        yield Finding(
            id="host-compiler",
            severity=Severity.WARNING,
            title="no working g++ for nvcc",
            evidence=(gxx.error if gxx else env.unknown.get("gxx", "g++ not found")) or "",
            why="nvcc compiles host code with g++",
            fix="apt-get install g++",
            blocks=SOURCE_ONLY,
        )
        return
    gcc_major = parsers.major(gxx.version)
    evidence = f"{gxx.path} {gxx.version}; nvcc {nvcc} accepts GCC <= {limit}"
    if limit is not None and gcc_major is not None and gcc_major > limit:
        yield Finding(
            id="host-compiler",
            severity=Severity.WARNING,
            title="host GCC too new for nvcc",
            evidence=evidence,
            why=f"nvcc stops with '#error -- unsupported GNU version! gcc versions later than {limit} "
            "are not supported!'",
            fix=f"apt-get install g++-{limit} && export CC=gcc-{limit} CXX=g++-{limit}",
            blocks=SOURCE_ONLY,
        )
    else:
        yield _ok("host-compiler", "host GCC accepted by nvcc", evidence)


STATIC_RUNTIME_WHY = (
    "an extension linked with it carries a private static libstdc++ next to the shared one torch "
    "uses: a failing check inside it whose message formats a number kills the process with SIGSEGV "
    "instead of raising a Python exception (issue #10)"
)


def check_cxx_runtime(env: Environment) -> Iterator[Finding]:
    """The C++ compiler a build links with must use the shared libstdc++."""
    if not env.cxx_compilers:
        return
    default = env.cxx_compilers[0]
    if default.libstdcxx:
        yield _ok(
            "cxx-runtime", "C++ compiler links the shared libstdc++", libstdcxx.describe(default)
        )
        return
    choice = libstdcxx.choose(env.cxx_compilers)
    yield Finding(
        id="cxx-runtime",
        severity=Severity.ERROR if choice.problem else Severity.WARNING,
        title="the C++ compiler has no shared libstdc++"
        + ("" if choice.problem else " (fa-dist build switches to one that has)"),
        evidence=libstdcxx.describe(default),
        why=STATIC_RUNTIME_WHY,
        fix=libstdcxx.fix_for(env.cxx_compilers),
        blocks=SOURCE_ONLY if choice.problem else frozenset(),
    )


def check_installed_runtime(env: Environment) -> Iterator[Finding]:
    """An installed fa_kernels extension built with a static libstdc++ crashes on bad input."""
    for ext in env.extensions:
        evidence = libstdcxx.static_runtime_evidence(ext.needed, ext.runtime_defined)
        if evidence:
            yield Finding(
                id="package-fa-kernels-runtime",
                severity=Severity.ERROR,
                title="installed fa_kernels extension carries its own static libstdc++",
                evidence=f"{ext.path} {evidence}",
                why=STATIC_RUNTIME_WHY,
                fix=f"{_pip(env, 'uninstall -y fa-kernels')} && fa-dist install",
            )


def check_ninja(env: Environment) -> Iterator[Finding]:
    if env.ninja and env.ninja.ok:
        yield _ok("ninja", "ninja works", f"{env.ninja.path} {env.ninja.version}")
        return
    evidence = (env.ninja.error if env.ninja else env.unknown.get("ninja")) or "ninja not found"
    fix = (
        _pip(env, "install ninja")
        if env.ninja is None
        else (f"{_pip(env, 'uninstall -y ninja')} && {_pip(env, 'install ninja')}")
    )
    yield Finding(
        id="ninja",
        severity=Severity.WARNING,
        title="ninja missing" if env.ninja is None else "ninja is broken (`ninja --version` fails)",
        evidence=evidence,
        why="without a working ninja, torch silently falls back to a serial build that takes hours",
        fix=fix,
        blocks=SOURCE_ONLY,
    )


def check_max_jobs(env: Environment) -> Iterator[Finding]:
    res = env.resources
    threads = _int(env.env_vars.get("NVCC_THREADS")) or 2
    plan = jobs.recommend(
        cpus=res.cpus, mem_available_mib=res.mem_available_mib, nvcc_threads=threads
    )
    raw = env.env_vars.get("MAX_JOBS")
    if raw is not None and _int(raw) is None:
        yield Finding(
            id="max-jobs",
            severity=Severity.WARNING,
            title="MAX_JOBS is not a number",
            evidence=f"MAX_JOBS={raw!r}",
            why="torch's build rejects it",
            fix=f"export MAX_JOBS={plan.max_jobs}",
            blocks=SOURCE_ONLY,
        )
        return
    effective = _int(raw) if raw is not None else jobs.ninja_default_jobs(res.cpus)
    assert effective is not None
    label = (
        f"MAX_JOBS={raw}" if raw is not None else f"MAX_JOBS unset (ninja runs {effective} jobs)"
    )
    need_gib = effective * threads * knowledge.NVCC_JOB_PEAK_MIB / 1024
    evidence = f"{label}, NVCC_THREADS={threads}: up to ~{need_gib:.0f} GiB; {plan.reason}"
    if effective > plan.max_jobs and (
        res.mem_available_mib is None or need_gib * 1024 > res.mem_available_mib
    ):
        # fa-dist's own builds set MAX_JOBS themselves; an unset one hurts only builds run by hand
        # (pip install flash-attn), so it is a note, while an explicit bad value is a warning.
        yield Finding(
            id="max-jobs",
            severity=Severity.WARNING if raw is not None else Severity.INFO,
            title="too many parallel nvcc jobs for this RAM",
            evidence=evidence,
            why="each nvcc job peaks at several GB; too many at once get OOM-killed or freeze the "
            "machine" + ("" if raw is not None else " (fa-dist build sets MAX_JOBS itself)"),
            fix=f"export MAX_JOBS={plan.max_jobs} NVCC_THREADS={plan.nvcc_threads}",
        )
    else:
        yield _ok(
            "max-jobs",
            f"parallel build fits in RAM (MAX_JOBS={plan.max_jobs} recommended)",
            evidence,
        )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def check_disk(env: Environment) -> Iterator[Finding]:
    need = knowledge.MIN_BUILD_DISK_MIB
    for label, free in sorted(env.resources.disk_free_mib.items()):
        if free < need:
            yield Finding(
                id="disk",
                severity=Severity.WARNING,
                title=f"low disk space in the {label} folder",
                evidence=f"{free} MiB free in the {label} folder; a build needs ~{need} MiB",
                why="object files, the wheel and pip's copy fill the disk and the build dies half-way",
                fix=(
                    "export FA_DIST_CACHE_DIR=/a/bigger/disk/fa-dist"
                    if label != "tmp"
                    else "export TMPDIR=/a/bigger/disk/tmp"
                ),
                blocks=SOURCE_ONLY,
            )


# -- triton and installed kernels --------------------------------------------------------------


def check_triton(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if not torch:
        return
    pin = _triton_pin(torch)
    if env.triton_version is None:
        if torch.cuda or torch.hip:
            yield Finding(
                id="triton",
                severity=Severity.WARNING,
                title="triton is not installed",
                evidence=f"torch {torch.version} pins {pin or 'a triton release'}; none installed",
                why="the Triton backend (and torch.compile) need it; only the CUDA backend would remain",
                fix=_pip(env, f"install 'triton=={pin}'" if pin else "install triton"),
            )
        return
    if pin and not _version_matches(env.triton_version, pin):
        yield Finding(
            id="triton",
            severity=Severity.WARNING,
            title="triton is not the release torch pins",
            evidence=f"triton {env.triton_version}; torch {torch.version} requires {torch.triton_requirement or pin}",
            why="torch.compile and Triton kernels are only tested against the pinned release; others "
            "fail to compile or miscompile",
            fix=_pip(env, f"install 'triton=={pin}'"),
        )
    else:
        yield _ok("triton", "triton matches torch", f"triton {env.triton_version}")


def _triton_pin(torch: TorchInfo) -> str | None:
    if torch.triton_requirement:
        m = re.search(r"==\s*([\w.]+)", torch.triton_requirement)
        return m[1] if m else None
    parts = _vtuple(_public(torch.version))[:2]
    return knowledge.TRITON_PIN_BY_TORCH.get((parts[0], parts[1])) if len(parts) == 2 else None


def _version_matches(installed: str, pin: str) -> bool:
    """'3.3.1' matches a pin of '3.3' (a series) and of '3.3.1'."""
    return _vtuple(_public(installed))[: len(_vtuple(pin))] == _vtuple(pin)


def check_kernel_packages(env: Environment) -> Iterator[Finding]:
    for pkg in env.packages:
        if compat.is_compat(pkg):
            continue  # check_flash_attn_compat
        if pkg.import_status is ImportStatus.BROKEN and not _torch_ok(env):
            # the package cannot import before torch does: torch-import carries the fix
            yield Finding(
                id=f"package-{pkg.name}",
                severity=Severity.INFO,
                title=f"{pkg.name} {pkg.version} cannot import until torch works",
                evidence=pkg.import_error or "",
                why="see torch-import",
            )
        elif pkg.import_status is ImportStatus.BROKEN:
            yield _broken_package(env, pkg)
        elif pkg.build_info:
            yield from _build_info_mismatch(env, pkg)
        else:
            yield _ok(
                f"package-{pkg.name}", f"{pkg.name} {pkg.version} imports", pkg.location or ""
            )


def _broken_package(env: Environment, pkg: PackageInfo) -> Finding:
    kind, why = classify_import_error(pkg.import_error or "")
    mismatch = _describe_mismatch(env, pkg)
    title = (
        f"installed {pkg.name} {pkg.version} does not match this torch"
        if mismatch
        else f"installed {pkg.name} {pkg.version} fails to import ({kind})"
    )
    return Finding(
        id=f"package-{pkg.name}",
        severity=Severity.ERROR,
        title=title,
        evidence=(f"{mismatch}; " if mismatch else "") + (pkg.import_error or ""),
        why=why,
        fix=f"{_pip(env, f'uninstall -y {pkg.name}')} && fa-dist install",
    )


def _describe_mismatch(env: Environment, pkg: PackageInfo) -> str | None:
    """What the package was built for vs what is installed, from its build metadata or version tag."""
    torch = _torch_ok(env)
    info = dict(pkg.build_info)
    if (
        not info and "+" in pkg.version
    ):  # upstream-style local tags: 2.8.3+cu12torch2.6cxx11abiFALSE
        m = re.search(r"cu(\d+)torch(\d+\.\d+)cxx11abi(true|false)", pkg.version, re.I)
        if m:
            info = {"torch": m[2], "cuda": m[1], "cxx11_abi": str(m[3].upper() == "TRUE")}
        m = re.search(r"cu(\d+)torch(\d+\.\d+)stableabi", pkg.version, re.I)
        if m:
            info = {"torch_target": m[2], "cuda": m[1]}
    if not info or not torch:
        return None
    diffs = []
    built_torch, target = info.get("torch", ""), info.get("torch_target", "")
    have = _vtuple(_public(torch.version))[:2]
    if target and have < _vtuple(target)[:2]:
        # a stable-ABI build calls C shim functions its target torch has and older ones may not
        diffs.append(
            f"stable-ABI build for torch >= {target}, installed torch {torch.version} is older "
            "than its target"
        )
    elif not target and built_torch and _vtuple(built_torch)[:2] != have:
        diffs.append(f"built for torch {built_torch}, installed torch is {torch.version}")
    if (
        not target
        and "cxx11_abi" in info
        and torch.cxx11_abi is not None
        and info["cxx11_abi"] != str(torch.cxx11_abi)
    ):
        diffs.append(f"built with C++11 ABI={info['cxx11_abi']}, torch uses {torch.cxx11_abi}")
    built_cuda = info.get("cuda", "")
    if (
        built_cuda
        and torch.cuda
        and parsers.major(built_cuda.replace("cu", ""))
        not in (torch.cuda.major, torch.cuda.major * 10 + torch.cuda.minor)
    ):
        diffs.append(f"built for CUDA {built_cuda}, torch uses CUDA {torch.cuda}")
    return "; ".join(diffs) or None


def _build_info_mismatch(env: Environment, pkg: PackageInfo) -> Iterator[Finding]:
    mismatch = _describe_mismatch(env, pkg)
    if mismatch:
        yield Finding(
            id=f"package-{pkg.name}",
            severity=Severity.ERROR,
            title=f"{pkg.name} {pkg.version} was built for another torch",
            evidence=mismatch,
            why="its compiled ops will fail to load or crash",
            fix=f"{_pip(env, f'uninstall -y {pkg.name}')} && fa-dist install",
        )
    elif pkg.build_info.get("torch_target"):
        yield _ok(
            f"package-{pkg.name}",
            f"{pkg.name} {pkg.version} imports: a stable-ABI build that serves this torch",
            _stable_abi_evidence(env, pkg),
        )
    else:
        yield _ok(
            f"package-{pkg.name}",
            f"{pkg.name} {pkg.version} imports and matches torch",
            pkg.location or "",
        )


def _stable_abi_evidence(env: Environment, pkg: PackageInfo) -> str:
    """What a stable-ABI build serves, what it was compiled on, and where this torch stands."""
    info = pkg.build_info
    torch = _torch_ok(env)
    served = f"torch >= {info['torch_target']}"
    if info.get("cuda"):
        cuda = CudaVersion.parse(info["cuda"])
        served += f" with CUDA {cuda.major}.x ({cuda} or newer)"
    elif info.get("hip"):
        served += f" with ROCm {'.'.join(info['hip'].split('.')[:2])}"
    return (
        f"serves {served}, CPython >= 3.10 (abi3); compiled against torch {info.get('torch', '?')} "
        f"with TORCH_TARGET_VERSION {info['torch_target']}; this is torch "
        f"{torch.version if torch else '?'}; {pkg.location or ''}"
    )


def check_flash_attn_compat(env: Environment) -> Iterator[Finding]:
    """fa-dist's flash-attn compat, when it is what provides flash_attn: importable, and made for
    the fa-kernels that is installed."""
    pkg = env.package(compat.DIST)
    if pkg is None or not compat.is_compat(pkg):
        return
    kernels = env.package("fa-kernels")
    made_for = pkg.build_info.get("fa_kernels", "?")
    where = f"flash-attn {pkg.version} at {pkg.location or '?'}"
    fix = "fa-dist install --flash-attn-compat"
    if pkg.import_status is not ImportStatus.OK:
        yield Finding(
            id="flash-attn-compat",
            severity=Severity.ERROR,
            title=f"the flash-attn compat {pkg.version} is installed but does not import",
            evidence=f"{where}: {pkg.import_error or '?'}",
            why="flash_attn imports (transformers' flash_attention_2 among them) fail or find another flash_attn",
            fix=fix,
        )
    elif kernels is None:
        yield Finding(
            id="flash-attn-compat",
            severity=Severity.ERROR,
            title="the flash-attn compat is installed without fa-kernels",
            evidence=f"{where}; fa-kernels: not installed",
            why="every flash_attn function the compat provides runs on fa-kernels",
            fix=f"{fix}   # or remove it: fa-dist uninstall --flash-attn-compat",
        )
    elif _public(kernels.version) != made_for:
        yield Finding(
            id="flash-attn-compat",
            severity=Severity.WARNING,
            title=f"the flash-attn compat was made for fa-kernels {made_for}, {kernels.version} is installed",
            evidence=where,
            why="its version no longer says what provides flash_attn, and `pip check` reports its pin",
            fix=fix,
        )
    else:
        yield _ok(
            "flash-attn-compat",
            f"flash_attn is fa-dist's flash-attn compat {pkg.version} over fa-kernels {kernels.version}",
            pkg.location or "",
        )


def check_flash_attn_providers(env: Environment) -> Iterator[Finding]:
    """Two distributions that both ship ``flash_attn`` (flash-attn-4 only adds flash_attn.cute)."""
    owners = [
        p
        for p in env.flash_attn_providers
        if re.sub(r"[-_.]+", "-", p.name.lower()) != "flash-attn-4"
    ]
    if len(owners) < 2:
        return
    listed = "; ".join(f"{p.name} {p.version} at {p.location or '?'}" for p in owners)
    ours = [p for p in owners if compat.is_compat_version(p.version)]
    fix = (
        "fa-dist uninstall --flash-attn-compat   # keep the other flash-attn"
        if ours
        else _pip(env, f"uninstall -y {owners[0].name}") + "   # then reinstall the one you want"
    )
    yield Finding(
        id="flash-attn-providers",
        severity=Severity.WARNING,
        title=f"{len(owners)} installed packages provide flash_attn",
        evidence=f"{listed}; `import flash_attn` resolves to {env.flash_attn_origin or '?'}",
        why=(
            "the one earlier on sys.path wins, so what runs depends on path order; and uninstalling "
            "one removes files the other needs"
        ),
        fix=fix,
    )


# -- ROCm --------------------------------------------------------------------------------------


def check_rocm(env: Environment) -> Iterator[Finding]:
    torch = _torch_ok(env)
    if not torch or not torch.hip:
        return
    rocm = env.rocm
    if rocm and rocm.version and _vtuple(rocm.version)[:2] != _vtuple(torch.hip)[:2]:
        yield Finding(
            id="rocm",
            severity=Severity.WARNING,
            title="ROCm version differs from torch's HIP",
            evidence=f"ROCm {rocm.version} ({rocm.source}); torch built with HIP {torch.hip}",
            why="hipcc builds against the system ROCm; a different minor breaks the extension's ABI",
            fix=_pip(
                env,
                f"install --force-reinstall torch --index-url "
                f"https://download.pytorch.org/whl/rocm{'.'.join(rocm.version.split('.')[:2])}",
            ),
            blocks=SOURCE_ONLY,
        )
    gfx = [g.arch for g in torch.devices if g.arch and g.arch.family is ArchFamily.AMD]
    for arch in gfx:
        if torch.arch_list and str(arch) not in torch.arch_list:
            yield Finding(
                id="rocm-arch",
                severity=Severity.ERROR,
                title=f"torch has no kernels for {arch}",
                evidence=f"torch arch list: {' '.join(torch.arch_list)}",
                why="HIP code objects are exact per gfx target",
                blocks=BOTH,
                fix=_pip(
                    env,
                    "install --force-reinstall torch --index-url "
                    "https://download.pytorch.org/whl/rocm6.4",
                ),
            )
    wanted = env.env_vars.get("PYTORCH_ROCM_ARCH")
    if wanted and gfx and not any(str(a) in wanted.replace(",", ";").split(";") for a in gfx):
        yield Finding(
            id="rocm-arch",
            severity=Severity.WARNING,
            title="PYTORCH_ROCM_ARCH excludes this GPU",
            evidence=f"PYTORCH_ROCM_ARCH={wanted}; GPU(s): {', '.join(map(str, gfx))}",
            why="a source build would produce code objects this GPU cannot load",
            fix=f"export PYTORCH_ROCM_ARCH={';'.join(dict.fromkeys(map(str, gfx)))}",
            blocks=SOURCE_ONLY,
        )


def check_arch_env(env: Environment) -> Iterator[Finding]:
    """TORCH_CUDA_ARCH_LIST that leaves out the GPU makes a build that cannot run here."""
    wanted = env.env_vars.get("TORCH_CUDA_ARCH_LIST")
    gpus = [g.arch for g in env.visible_gpus if g.arch and g.arch.is_nvidia]
    if not wanted or not gpus:
        return
    entries = [e for e in re.split(r"[;\s,]+", wanted) if e]
    archs = []
    for entry in entries:
        try:
            archs.append((Arch.parse(entry), entry.lower().endswith("+ptx")))
        except ValueError:
            continue
    for gpu in gpus:
        covered = any(
            (a.major == gpu.major and a.minor <= gpu.minor) or (ptx and a.base <= gpu.base)
            for a, ptx in archs
        )
        if not covered:
            yield Finding(
                id="arch-list",
                severity=Severity.WARNING,
                title=f"TORCH_CUDA_ARCH_LIST leaves out {gpu}",
                evidence=f"TORCH_CUDA_ARCH_LIST={wanted!r}",
                why="a source build would contain no code this GPU can run",
                fix="unset TORCH_CUDA_ARCH_LIST   # fa-dist builds for the detected GPU",
                blocks=SOURCE_ONLY,
            )


CHECKS: tuple[Callable[[Environment], Iterable[Finding]], ...] = (
    check_torch,
    check_torch_cpu_only,
    check_driver,
    check_gpu_visible,
    check_gpu_arch,
    check_torch_arch_list,
    check_triton,
    check_kernel_packages,
    check_precompiled,
    check_flash_attn_compat,
    check_flash_attn_providers,
    check_rocm,
    check_nvcc,
    check_host_compiler,
    check_cxx_runtime,
    check_installed_runtime,
    check_ninja,
    check_max_jobs,
    check_disk,
    check_arch_env,
)


def run_checks(env: Environment) -> list[Finding]:
    """Every finding, most severe first (stable within a severity)."""
    findings = [f for check in (*CHECKS, *neighbours.CHECKS) for f in check(env)]
    return sorted(findings, key=lambda f: -f.severity.rank)


# A CUDA compile needs the toolchain, not a GPU on this machine (CI builds wheels on CPU runners)
GPU_PRESENCE_CHECKS = ("gpu-visible", "gpu-arch")


@dataclass(frozen=True, kw_only=True)
class SourceBuild:
    """Whether this machine can build the kernels from source, and the findings that stop it."""

    blockers: tuple[Finding, ...]

    @property
    def allowed(self) -> bool:
        return not self.blockers

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.id for f in self.blockers))


def source_build(findings: Iterable[Finding], *, needs_gpu: bool = True) -> SourceBuild:
    """The one answer to "can this machine build from source, and what blocks it", shared by doctor,
    build and install. ``needs_gpu=False`` for a CUDA build, which compiles for archs it is told."""
    return SourceBuild(
        blockers=tuple(
            f
            for f in findings
            if Route.SOURCE in f.blocks and (needs_gpu or f.id not in GPU_PRESENCE_CHECKS)
        )
    )


@dataclass(frozen=True, kw_only=True)
class Verdict:
    prebuilt_blockers: tuple[str, ...]
    source_blockers: tuple[str, ...]
    exit_code: int
    summary: str


def verdict(findings: Iterable[Finding], *, strict: bool = False) -> Verdict:
    findings = list(findings)
    pre = tuple(dict.fromkeys(f.id for f in findings if Route.PREBUILT in f.blocks))
    src = source_build(findings).ids
    if not src:
        summary = (
            "ready to build from source (and for prebuilt wheels)"
            if not pre
            else ("ready to build from source; prebuilt wheels blocked by: " + ", ".join(pre))
        )
    elif not pre:
        summary = "ready for prebuilt wheels; building from source blocked by: " + ", ".join(src)
    else:
        summary = "not ready: blocked by " + ", ".join(dict.fromkeys(pre + src))
    worst = max((f.severity.rank for f in findings), default=0)
    failing = Severity.WARNING.rank if strict else Severity.ERROR.rank
    code = 3 if worst >= failing else 0
    return Verdict(prebuilt_blockers=pre, source_blockers=src, exit_code=code, summary=summary)
