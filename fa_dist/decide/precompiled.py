"""Doctor's view of fa_kernels' precompiled Triton kernels (issue #15): are there any for this Triton and
these GPUs, so that first calls load instead of compiling? Pure: facts in, a finding out."""

from __future__ import annotations

from collections.abc import Iterator

from fa_dist.decide.finding import Finding, Severity, ok
from fa_dist.model.environment import Environment
from fa_dist.model.versions import Arch, ArchFamily


def triton_target(arch: Arch) -> str:
    """The GPU as Triton names its compile target: sm_90 -> "cuda:90", gfx942 -> "hip:gfx942"."""
    if arch.family is ArchFamily.AMD:
        return f"hip:{arch.gfx}"
    return f"cuda:{arch.major * 10 + arch.minor}"


def wanted(env: Environment) -> list[str]:
    """The groups this machine would use: "triton-<version> <target>" per distinct visible GPU."""
    if env.triton_version is None:
        return []
    targets = sorted({triton_target(g.arch) for g in env.visible_gpus if g.arch is not None})
    return [f"triton-{env.triton_version} {t}" for t in targets]


def check_precompiled(env: Environment) -> Iterator[Finding]:
    pkg = env.package("fa-kernels")
    want = wanted(env)
    if (
        pkg is None or not want
    ):  # nothing installed, or no GPU/triton: nothing runs Triton on a GPU here
        return
    have = pkg.precompiled
    missing = [w for w in want if w not in have]
    stored = ", ".join(f"{k} ({v} kernels)" for k, v in have.items()) or "none"
    if not missing:
        yield ok(
            "precompiled-kernels",
            "Triton kernels precompiled for this Triton and GPU",
            f"fa_kernels/_precompiled: {stored}; first calls load them instead of compiling",
        )
        return
    yield Finding(
        id="precompiled-kernels",
        severity=Severity.INFO,
        title="fa_kernels' Triton kernels are not precompiled for this Triton and GPU",
        evidence=f"wanted {', '.join(missing)}; the installed package has {stored}",
        why="each new case (dtype, head dim, causal, ...) compiles at its first call in every fresh "
        "process with an empty Triton cache: seconds each (a container's first step pays them all)",
        fix=f"fa-dist warm{' --python ' + env.python.executable if env.python else ''}",
    )
