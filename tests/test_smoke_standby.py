"""The smoke test's process started ahead (act/smoke.Standby): it waits for "go" on its standard input,
is used by smoke.run when it runs that very test, and ends when it is not. A stand-in interpreter (a
shell script) plays the target: it ignores its arguments, waits on standard input as the real wrapper
does, and prints a smoke result only after "go"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fa_dist.act import smoke
from fa_dist.errors import SmokeFailed

pytestmark = pytest.mark.integration  # real processes

RESULT = {"passed": True, "device": "stand-in", "fa_kernels": "0.1.0", "backends": ["triton"],
          "cases": [{"op": "attention", "backend": "triton", "shape": "s", "passed": True, "error": "",
                     "speed": "-", "max_err": 0.0, "tolerance": 1.0}]}


def stand_in(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "ended"
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        "read line\n"
        f'[ "$line" = go ] || {{ echo "no go: $line" > {marker}; exit 0; }}\n'
        """echo 'FA_DIST_SMOKE_FILE "/site/fa_kernels/__init__.py"'\n"""
        f"echo '{json.dumps(RESULT)}'\n")
    script.chmod(0o755)
    return str(script), marker


def test_run_uses_the_waiting_process(tmp_path: Path) -> None:
    python, marker = stand_in(tmp_path)
    with smoke.Standby(python, quick=True) as ready:
        result = smoke.run(python, quick=True, timeout=30, standby=ready)
    assert result.passed and result.data["device"] == "stand-in"
    assert result.module == "/site/fa_kernels/__init__.py" and not marker.exists()
    # without it the stand-in reads no "go" (its input is empty) and prints nothing: a failed test
    with pytest.raises(SmokeFailed, match="did not run to the end"):
        smoke.run(python, quick=True, timeout=30)


def test_a_standby_left_unused_ends_and_another_test_is_not_given_it(tmp_path: Path) -> None:
    python, _marker = stand_in(tmp_path)
    with smoke.Standby(python, quick=True) as ready:
        assert ready.take(python, quick=False) is None  # the full test was asked for: not this one
        assert ready.take(python, quick=True) is None  # and it is gone
    with smoke.Standby(python, quick=True) as unused:
        proc = unused._proc
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None  # leaving the block ended it


def test_a_standby_that_cannot_start_is_no_standby(tmp_path: Path) -> None:
    with smoke.Standby(str(tmp_path / "missing-python"), quick=True) as ready:
        assert ready.take(str(tmp_path / "missing-python"), quick=True) is None
