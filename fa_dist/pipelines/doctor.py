"""The doctor pipeline behind `fa-dist doctor`: every check on the facts, the verdict, and the record
of the last install fa-dist made in the target environment, and this fa-dist's own facts (where
`fa-dist build` takes the kernel sources from, where wheels go)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fa_dist import sources
from fa_dist.act.record import read_record
from fa_dist.decide import attention, checks
from fa_dist.model.environment import Environment
from fa_dist.options import DoctorOptions
from fa_dist.paths import default_wheelhouse


@dataclass(frozen=True, kw_only=True)
class Report:
    env: Environment
    findings: tuple[checks.Finding, ...]  # most severe first
    verdict: checks.Verdict
    install_record: dict[str, Any] | None  # None for a snapshot (it names no live environment)
    from_snapshot: bool  # the report is about another machine: fa-dist's own facts are not shown
    kernel_source: dict[str, Any]  # sources.describe()
    wheelhouse: str
    attention: tuple[attention.Choice, ...] | None = None  # with --attention


def run(env: Environment, options: DoctorOptions) -> Report:
    findings = checks.run_checks(env)
    live = env.python is not None and options.target.env_file is None
    return Report(
        env=env,
        findings=tuple(findings),
        verdict=checks.verdict(findings, strict=options.strict),
        install_record=read_record(env.python.prefix) if live and env.python else None,
        from_snapshot=options.target.env_file is not None,
        kernel_source=sources.describe(),
        wheelhouse=str(default_wheelhouse()),
        attention=tuple(attention.choices(env)) if options.attention else None,
    )
