"""Run fa_kernels' own smoke test in the target interpreter, as a subprocess, so a crash
or an illegal memory access is reported instead of taking fa-dist down."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fa_dist import subproc
from fa_dist.errors import SmokeFailed


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    data: dict[str, Any]
    seconds: float


def run(python: str, *, quick: bool, timeout: float = 600) -> SmokeResult:
    import time

    started = time.perf_counter()
    argv = [python, "-m", "fa_kernels.smoke", "--json"] + (["--quick"] if quick else [])
    done = subproc.run(argv, timeout=timeout)
    seconds = time.perf_counter() - started
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        why = done.error or (
            f"killed by signal {-done.returncode}"
            if done.returncode and done.returncode < 0
            else "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        )
        raise SmokeFailed(
            f"the smoke test did not run to the end: {why}",
            fix=f"run it by hand to see everything: {python} -m fa_kernels.smoke",
        )
    data = json.loads(lines[-1])
    return SmokeResult(
        passed=bool(data.get("passed")) and done.returncode == 0, data=data, seconds=seconds
    )
