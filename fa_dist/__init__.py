"""fa-dist: FlashAttention-class kernels that install in seconds and are verified on your GPU.

The library API (docs/api.md): each function takes the command's options value (fa_dist.options) and
returns a value; nothing is printed unless a Reporter is passed, and failures raise the FaDistError
subclasses of fa_dist.errors, each with the exit code the CLI would use.
"""

from __future__ import annotations

from fa_dist._version import __version__
from fa_dist.act.warm import WarmResult
from fa_dist.facts import target as _target
from fa_dist.model.environment import Environment
from fa_dist.options import (
    BuildOptions,
    DoctorOptions,
    InstallOptions,
    Target,
    UninstallOptions,
    WarmOptions,
)
from fa_dist.pipelines import build as _build
from fa_dist.pipelines import doctor as _doctor
from fa_dist.pipelines import install as _install
from fa_dist.pipelines import uninstall as _uninstall
from fa_dist.pipelines import warm as _warm
from fa_dist.reporter import Reporter

__all__ = [
    "BuildOptions",
    "DoctorOptions",
    "Environment",
    "InstallOptions",
    "Reporter",
    "Target",
    "UninstallOptions",
    "WarmOptions",
    "__version__",
    "build",
    "detect",
    "doctor",
    "install",
    "uninstall",
    "warm",
]


def detect(target: Target | None = None) -> Environment:
    """The facts of the target interpreter and this host (or the snapshot ``target.env_file``)."""
    return _target.environment(target or Target(), sdpa=True)


def doctor(options: DoctorOptions | None = None) -> _doctor.Report:
    """Every finding about the target, the verdict (with its exit code), and the last install record."""
    options = options or DoctorOptions()
    return _doctor.run(_target.environment(options.target, sdpa=options.attention), options)


def build(options: BuildOptions | None = None, reporter: Reporter | None = None) -> _build.Outcome:
    """Build (or reuse) the kernel wheel for the target and put it into the wheelhouse."""
    options = options or BuildOptions()
    return _build.run(_build.plan(detect(options.target), options), reporter)


def install(
    options: InstallOptions | None = None, reporter: Reporter | None = None
) -> _install.Outcome:
    """Install the best matching wheel (building one when needed), smoke-test it, roll back on failure."""
    options = options or InstallOptions()
    with _install.standby(options) as ready:  # the smoke test's torch import, meanwhile
        env = _target.environment(options.target)
        return _install.run(_install.plan(env, options), reporter, ready)


def uninstall(
    options: UninstallOptions | None = None, reporter: Reporter | None = None
) -> _uninstall.Outcome:
    """Remove fa-kernels, the flash-attn compat and the install record (or only the compat)."""
    return _uninstall.run(options or UninstallOptions(), reporter)


def warm(options: WarmOptions | None = None, reporter: Reporter | None = None) -> WarmResult:
    """Precompile the installed kernels' Triton code for the target's GPU and Triton (fa-dist warm)."""
    return _warm.run(options or WarmOptions(), reporter)
