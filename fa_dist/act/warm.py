"""Precompile the installed fa_kernels' Triton kernels in the target interpreter (fa_kernels.warm), as a
subprocess: the cases a first call would compile, for the target's GPU and Triton, stored in the package
and copied into Triton's cache (see fa_kernels/precompiled.py)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_dist import subproc
from fa_dist.errors import WarmFailed

DEFAULT_TIMEOUT_S = 1800.0
CANNOT = 2  # fa_kernels.warm's exit status for "cannot here" (no GPU, no triton)


@dataclass(frozen=True)
class WarmResult:
    data: dict[str, Any]  # fa_kernels.warm's result: group, kernels, cases, failed, ... or skipped
    seconds: float

    @property
    def failed(self) -> dict[str, str]:
        failed: dict[str, str] = self.data.get("failed") or {}
        return failed


PROGRESS = re.compile(r"warm: (\d+)/(\d+) (.*)")


def progress_of(line: str) -> tuple[int, int, str] | None:
    """("warm: 12/60 attention bfloat16 d64") -> (12, 60, "attention bfloat16 d64")."""
    match = PROGRESS.match(line)
    return (int(match[1]), int(match[2]), match[3]) if match else None


def relay(update: Callable[[int, int], None], note: Callable[[str], None]) -> Callable[[str], None]:
    """Feed fa_kernels.warm's progress lines to a bar; a failed case also gets a line of its own."""

    def each(line: str) -> None:
        parsed = progress_of(line)
        if parsed is None:
            return
        done, total, label = parsed
        update(done, total)
        if "FAILED" in label:
            note(f"  [yellow]{label}[/]")

    return each


def run(
    python: str,
    *,
    jobs: int | None = None,
    if_missing: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
    unpacked: Path | None = None,
) -> WarmResult:
    """Run ``python -m fa_kernels.warm`` isolated from a neutral folder; progress lines ("warm: i/n
    case") go to ``progress``. ``unpacked``: a wheel's unpacked files, whose fa_kernels is warmed (and
    stored there) instead of the installed one. Raises WarmFailed when it cannot run here or dies; a run
    where some cases failed returns (the others are stored)."""
    isolation = (
        ["-I"] if unpacked is None else []
    )  # -I would drop the PYTHONPATH naming ``unpacked``
    argv = [python, *isolation, "-u", "-m", "fa_kernels.warm", "--json"]
    argv += (["--jobs", str(jobs)] if jobs else []) + (["--if-missing"] if if_missing else [])
    if unpacked is not None:
        # the unpacked files are temporary: neither the RECORD nor Triton's cache may point at them
        argv += [
            "--store",
            str(unpacked / "fa_kernels" / "_precompiled"),
            "--no-record",
            "--no-seed",
        ]
    started = time.perf_counter()

    def forward(line: str) -> None:
        if progress is not None and line.startswith("warm: "):
            progress(line)

    with tempfile.TemporaryDirectory(prefix="fa-dist-warm-") as neutral:
        done = subproc.stream(
            argv, timeout=timeout, on_stderr=forward, cwd=neutral, env=_env(unpacked)
        )
    data = parse_result(done.stdout)
    if data is None or done.returncode not in (0, 1):
        raise WarmFailed(_why(done, data), fix=_fix(done, data, python))
    return WarmResult(data=data, seconds=time.perf_counter() - started)


def _env(unpacked: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the interpreter compiles nothing
    if unpacked is not None:
        env["PYTHONPATH"] = str(unpacked)
    return env


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object; None when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(data, dict):
                return data
    return None


def _why(done: subproc.Completed, data: dict[str, Any] | None) -> str:
    if data is not None and isinstance(data.get("error"), str):
        return f"cannot precompile the Triton kernels here: {data['error']}"
    if done.error:
        return f"precompiling the Triton kernels did not finish: {done.error}"
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
    return f"precompiling the Triton kernels failed (exit {done.returncode}): {tail or 'no output'}"


def _fix(done: subproc.Completed, data: dict[str, Any] | None, python: str) -> str:
    if done.returncode == CANNOT and data is not None:
        return "run it on the machine with the GPU the kernels will run on; the kernels still compile at first use"
    return f"run it by hand to see everything: {python} -m fa_kernels.warm"
