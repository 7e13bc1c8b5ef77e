"""A doctor finding and its severity: what every check, in checks.py and neighbours.py, returns."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this module stays a leaf of the import graph
    from fa_dist.model.environment import Environment


class Severity(Enum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Route(Enum):
    PREBUILT = "prebuilt"
    SOURCE = "source"


BOTH = frozenset({Route.PREBUILT, Route.SOURCE})
SOURCE_ONLY = frozenset({Route.SOURCE})


@dataclass(frozen=True, kw_only=True)
class Finding:
    id: str
    severity: Severity
    title: str
    evidence: str
    why: str = ""
    fix: str | None = None
    blocks: frozenset[Route] = field(default_factory=frozenset)


def pip(env: Environment, args: str) -> str:
    python = env.python.executable if env.python else "python"
    return f"{shlex.quote(python)} -m pip {args}"


def ok(check_id: str, title: str, evidence: str) -> Finding:
    return Finding(id=check_id, severity=Severity.OK, title=title, evidence=evidence)
