"""Run fa_kernels' own smoke test in the target interpreter, as a subprocess, so a crash
or an illegal memory access is reported instead of taking fa-dist down."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_dist import subproc
from fa_dist.errors import ConfigError, SmokeFailed

log = logging.getLogger("fa_dist")


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    data: dict[str, Any]
    seconds: float
    module: str | None = None  # the fa_kernels/__init__.py the test imported


DEFAULT_TIMEOUT_S = 600.0
FILE_MARKER = "FA_DIST_SMOKE_FILE "
# Runs in the target, isolated (-I: no cwd or script folder on sys.path, no PYTHON* variables, no user
# site) from a neutral folder, and says which fa_kernels it imported before running the test.
WRAPPER = (
    "import json, runpy, sys\n"
    "import fa_kernels\n"
    f"print({FILE_MARKER!r} + json.dumps(fa_kernels.__file__), flush=True)\n"
    "sys.argv = ['fa_kernels.smoke'] + sys.argv[1:]\n"
    "runpy.run_module('fa_kernels.smoke', run_name='__main__', alter_sys=True)\n"
)
# The same, started ahead (Standby): torch is imported while fa-dist still detects, plans and
# pip-installs; the test itself starts at a "go" line on standard input (and fa_kernels is imported only
# then, so it is the installed copy); anything else there (fa-dist gave up) ends it. A failed torch import
# is raised after "go" as it happened (a second import would report a half-initialised torch instead).
# No CUDA context is made while waiting: on an exclusive-process GPU, precompiling needs the device.
STANDBY_WRAPPER = (
    "import sys\n"
    "failed = None\n"
    "try:\n"
    "    import torch\n"
    "    torch.cuda.is_available()\n"
    "except BaseException as exc:\n"
    "    failed = exc\n"
    "if sys.stdin.readline().strip() != 'go':\n"
    "    sys.exit(0)\n"
    "if failed is not None:\n"
    "    raise failed\n"
    "import importlib\n"
    "importlib.invalidate_caches()  # pip has added files since this process looked\n" + WRAPPER
)
CASE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "op": str,
    "backend": str,
    "shape": str,
    "passed": bool,
    "error": str,
    "speed": str,
    "max_err": (int, float),
    "tolerance": (int, float),
}
TOP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "passed": bool,
    "device": str,
    "fa_kernels": str,
    "backends": list,
    "cases": list,
}


def timeout_from(value: float | None) -> float:
    """The smoke test's time limit: the flag, else FA_DIST_SMOKE_TIMEOUT, else 600 s."""
    text = os.environ.get("FA_DIST_SMOKE_TIMEOUT")
    if value is None and text:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(
                f"FA_DIST_SMOKE_TIMEOUT={text!r} is not a number of seconds"
            ) from None
    if value is not None and not value > 0:
        raise ConfigError(f"the smoke timeout must be a positive number of seconds, not {value}")
    return value if value is not None else DEFAULT_TIMEOUT_S


INSTALL_QUICK = True  # fa-dist install runs the quick set


def interpreter_path(python: str) -> str | None:
    """The interpreter's own sys.executable, as the install's probe reports it (a pyenv shim or a link
    names another path); None when it does not run."""
    done = subproc.run([python, "-I", "-c", "import sys; print(sys.executable)"], timeout=30)
    lines = done.stdout.strip().splitlines() if done.ok else []
    return lines[-1] if lines else None


class Standby:
    """A smoke test started ahead of time in ``python``: its process imports torch while fa-dist goes
    on (on an H200, seconds of every install), then waits for ``run(..., standby=this)``. Use as a
    context manager: leaving it ends a process that was never told to go."""

    def __init__(self, python: str, *, quick: bool) -> None:
        self.python, self.quick = python, quick
        self._folder = tempfile.TemporaryDirectory(prefix="fa-dist-smoke-")
        argv = [python, "-I", "-u", "-c", STANDBY_WRAPPER, "--json"] + (
            ["--quick"] if quick else []
        )
        started = subproc.start(argv, cwd=self._folder.name, stdin=True)
        self._proc = None if isinstance(started, subproc.Completed) else started

    def take(self, python: str, quick: bool) -> subprocess.Popen[str] | None:
        """The waiting process, told to go, when it runs this test; None otherwise (or when it died)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None or (python, quick) != (self.python, self.quick):
            if proc is not None:
                log.debug(
                    "smoke standby for %s (quick=%s) not used for %s (quick=%s)",
                    self.python,
                    self.quick,
                    python,
                    quick,
                )
            self._end(proc)
            return None
        try:
            proc.stdin.write("go\n")
            proc.stdin.close()
        except OSError:  # it is gone (a crash importing torch): the caller starts a fresh one
            self._end(proc)
            return None
        return proc

    def close(self) -> None:
        """End the waiting process now (e.g. before a source build: it would hold memory for minutes)."""
        self._end(self._proc)
        self._proc = None

    @staticmethod
    def _end(proc: subprocess.Popen[str] | None) -> None:
        """Kill it: it holds nothing worth a clean exit. (Should fa-dist itself die, the end of its
        input makes it exit on its own once torch is imported.)"""
        if proc is not None:
            subproc.kill(proc)
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()

    def __enter__(self) -> Standby:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
        self._folder.cleanup()


def run(
    python: str,
    *,
    quick: bool,
    timeout: float | None = None,
    inside: Sequence[Path] = (),
    progress: Callable[[str], None] | None = None,
    standby: Standby | None = None,
) -> SmokeResult:
    """Run fa_kernels' smoke test in ``python``; ``inside``: the folders the imported fa_kernels must
    come from (the target's site-packages, for an install). Progress lines go to ``progress``.
    ``standby``: a process started ahead for this test, used when it is still waiting."""
    limit = timeout_from(timeout)
    started = time.perf_counter()
    argv = [python, "-I", "-u", "-c", WRAPPER, "--json"] + (["--quick"] if quick else [])

    def relay(line: str) -> None:
        if progress is not None and line.startswith("smoke: "):
            progress(line)

    waiting = standby.take(python, quick) if standby is not None else None
    if waiting is not None:
        done = subproc.follow(waiting, timeout=limit, on_stderr=relay)
    else:
        with tempfile.TemporaryDirectory(prefix="fa-dist-smoke-") as neutral:
            done = subproc.stream(argv, timeout=limit, on_stderr=relay, cwd=neutral)
    seconds = time.perf_counter() - started
    module = _imported_file(done.stdout)
    data = parse_result(done.stdout)
    if data is None:
        raise SmokeFailed(
            f"the smoke test did not run to the end: {_why(done, limit)}",
            fix=f"run it by hand to see everything: {python} -m fa_kernels.smoke"
            + ("; or allow more time: --smoke-timeout SECONDS" if done.error else ""),
        )
    if inside and (module is None or not any(_under(module, folder) for folder in inside)):
        raise SmokeFailed(
            f"the smoke test imported fa_kernels from {module or '?'}, not from the installed copy "
            f"in {', '.join(map(str, inside))}",
            fix="something on the target's sys.path (a .pth file, a folder) shadows the install",
        )
    passed = data["passed"] and all(c["passed"] for c in data["cases"]) and done.returncode == 0
    return SmokeResult(passed=passed, data=data, seconds=seconds, module=module)


def _under(module: str, folder: Path) -> bool:
    return Path(module).resolve().is_relative_to(folder.resolve())


def _why(done: subproc.Completed, limit: float) -> str:
    if done.error:
        return done.error
    if done.returncode is not None and done.returncode < 0:
        return f"killed by signal {-done.returncode}"
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
    return tail or f"it printed no result (exit {done.returncode})"


def _imported_file(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith(FILE_MARKER):
            with contextlib.suppress(ValueError):
                value = json.loads(line[len(FILE_MARKER) :])
                return value if isinstance(value, str) else None
    return None


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The smoke test's JSON result: the last stdout line that is a JSON object with every field of
    the right type and at least one case; None for anything else (garbage is a failed smoke test)."""
    for line in reversed(stdout.splitlines()):
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if _valid(data):
            return data  # type: ignore[no-any-return]
    return None


def _valid(data: object) -> bool:
    if not isinstance(data, dict) or not has_fields(data, TOP_FIELDS):
        return False
    cases = data["cases"]
    return (
        bool(cases)
        and all(isinstance(b, str) for b in data["backends"])
        and all(isinstance(c, dict) and has_fields(c, CASE_FIELDS) for c in cases)
    )


def has_fields(data: dict[str, Any], spec: dict[str, type | tuple[type, ...]]) -> bool:
    """Every key of ``spec`` is in ``data`` with a value of its type (a bool is no int here)."""
    return all(
        key in data
        and isinstance(data[key], want)
        and (want is bool or not isinstance(data[key], bool))
        for key, want in spec.items()
    )
