"""How a pipeline tells what it is doing while it runs. Pipelines take any Reporter; output.py has the
one for a terminal, and Silent is the library's default (no Console needed)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

# done, total (0: unknown); a pipeline feeds it while downloading or compiling
Progress = Callable[[int, int], None]


class Reporter(Protocol):
    def step(self, text: str) -> None:
        """A step finished or began: one line, with the time since the run started."""

    def note(self, text: str) -> None:
        """A line of detail under a step (rich markup allowed)."""

    def progress(self, label: str, *, unit: str) -> AbstractContextManager[Progress]:
        """A progress bar for work counted in ``unit`` ("bytes" or "steps")."""

    def elapsed(self) -> float:
        """Seconds since the run started."""


class Silent:
    """A Reporter that says nothing: what library callers get unless they pass their own."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started

    def step(self, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, label: str, *, unit: str) -> Iterator[Progress]:
        yield lambda done, total: None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
