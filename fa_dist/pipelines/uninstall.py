"""The uninstall pipeline behind `fa-dist uninstall`: remove what `fa-dist install` put into the
target environment (fa-kernels, the flash-attn compat, the install record), or only the compat. A
real (upstream) flash-attn, torch and triton are never touched (act/compat_install.py)."""

from __future__ import annotations

from dataclasses import dataclass

from fa_dist.act import compat_install
from fa_dist.facts import target as target_mod
from fa_dist.options import UninstallOptions
from fa_dist.reporter import Reporter, Silent


@dataclass(frozen=True, kw_only=True)
class Outcome:
    removed: tuple[str, ...]  # distribution names pip removed; empty when none was installed


def run(options: UninstallOptions, reporter: Reporter | None = None) -> Outcome:
    reporter = reporter or Silent()
    python = target_mod.resolve_python(options.target.python)
    removed = compat_install.uninstall(python, compat_only=options.compat_only, log=reporter.step)
    return Outcome(removed=tuple(removed))
