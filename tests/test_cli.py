"""The CLI as users run it: a real process, exit codes, JSON shape, and the wording that matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fa_dist.model.environment import Environment

from .envs import FIXTURES, H100, with_env_vars

pytestmark = pytest.mark.integration
H100_FILE = FIXTURES / "envs/h100-torch2.11-cu130.json"


def fa_dist(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "fa_dist", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=120)


def test_version_and_help() -> None:
    from fa_dist import __version__

    assert fa_dist("--version").stdout.strip() == f"fa-dist, version {__version__}"
    helped = fa_dist("doctor", "--help")
    assert helped.returncode == 0
    for option in ("--python", "--env-file", "--json", "--strict", "--verbose"):
        assert option in helped.stdout


def test_doctor_json_on_the_h100_snapshot_has_the_documented_shape() -> None:
    done = fa_dist("doctor", "--env-file", str(H100_FILE), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {
        "version", "verdict", "findings", "environment", "install_record", "kernel_source", "wheelhouse"
    }
    assert report["kernel_source"]["kind"] == "checkout"  # the tests run from one
    assert report["verdict"]["summary"] == "ready to build from source (and for prebuilt wheels)"
    assert {"id", "severity", "title", "evidence", "why", "fix", "blocks"} <= set(report["findings"][0])
    assert Environment.from_json(report["environment"]) == H100()


def test_doctor_report_can_be_fed_back_as_env_file(tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    saved.write_text(fa_dist("doctor", "--env-file", str(H100_FILE), "--json").stdout)
    assert fa_dist("doctor", "--env-file", str(saved)).returncode == 0


def test_doctor_text_for_hidden_gpus(tmp_path: Path) -> None:
    broken = with_env_vars(H100(), CUDA_VISIBLE_DEVICES="")
    from .envs import mutate

    broken = mutate(broken, torch__devices=(), torch__cuda_available=False)
    snap = tmp_path / "hidden.json"
    snap.write_text(json.dumps(broken.to_json()))
    done = fa_dist("doctor", "--env-file", str(snap))
    assert done.returncode == 3
    text = " ".join(done.stdout.split())
    assert "CUDA_VISIBLE_DEVICES hides every GPU" in text
    assert "fix: unset CUDA_VISIBLE_DEVICES" in text
    assert text.endswith("verdict: not ready: blocked by gpu-visible")


def test_doctor_strict_fails_on_warnings(tmp_path: Path) -> None:
    snap = tmp_path / "jobs.json"
    snap.write_text(json.dumps(with_env_vars(H100(), MAX_JOBS="256").to_json()))
    assert fa_dist("doctor", "--env-file", str(snap)).returncode == 0
    assert fa_dist("doctor", "--env-file", str(snap), "--strict").returncode == 3


def test_bad_inputs_exit_2_with_a_fix(tmp_path: Path) -> None:
    missing = fa_dist("doctor", "--python", str(tmp_path / "nope/python"))
    assert missing.returncode == 2
    assert "no such executable" in missing.stderr and "fix:" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = fa_dist("doctor", "--env-file", str(garbage))
    assert bad.returncode == 2 and "is not JSON" in bad.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**H100().to_json(), "gpu_count": 3}))
    assert "unknown keys ['gpu_count']" in fa_dist("doctor", "--env-file", str(wrong)).stderr
    assert "Traceback" not in bad.stderr + missing.stderr


def test_doctor_against_another_venv(tmp_path: Path) -> None:
    venv = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = fa_dist("doctor", "--python", str(venv / "bin/python"), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3
    assert report["environment"]["python"]["executable"] == str(venv / "bin/python")
    assert report["environment"]["torch"]["status"] == "missing"


def test_detect_writes_a_snapshot_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "snap.json"
    assert fa_dist("detect", "-o", str(out)).returncode == 0
    env = Environment.load(out)
    assert env.python is not None and env.python.executable == sys.executable


GOLDEN = Path(__file__).parent / "golden"


def test_doctor_text_on_the_h100_snapshot_is_golden() -> None:
    """The words users read: regenerate deliberately with
    NO_COLOR=1 COLUMNS=100 fa-dist doctor --env-file tests/fixtures/envs/h100-torch2.11-cu130.json -v"""
    done = fa_dist("doctor", "--env-file", str(H100_FILE), "-v")
    assert done.returncode == 0
    assert done.stdout == (GOLDEN / "doctor_h100_verbose.txt").read_text()


def test_from_source_with_the_build_blocked_is_an_error_not_a_silent_wheel(tmp_path: Path) -> None:
    """The H100 snapshot without nvcc, a compiled wheel that matches it at hand: --from-source names
    what blocks the build (exit 3) instead of installing that wheel; without --from-source the
    compiled wheel is chosen and no pure-Triton line is printed."""
    data = json.loads(H100_FILE.read_text())
    data["nvcc"] = None
    data["nvcc_elsewhere"] = []
    snapshot = tmp_path / "h100-no-nvcc.json"
    snapshot.write_text(json.dumps(data))
    wheels = tmp_path / "wh"
    wheels.mkdir()
    compiled = "fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp312-cp312-linux_x86_64.whl"
    (wheels / compiled).write_bytes(b"")
    (wheels / "fa_kernels-0.1.0-py3-none-any.whl").write_bytes(b"")
    args = ("install", "--env-file", str(snapshot), "--wheelhouse", str(wheels), "--offline", "--dry-run")
    refused = fa_dist(*args, "--from-source")
    assert refused.returncode == 3, refused.stderr
    assert "--from-source, but building from source is blocked by nvcc" in refused.stderr
    assert "using the pure-Triton wheel" not in refused.stderr and "plan:" not in refused.stderr
    chosen = fa_dist(*args)
    assert chosen.returncode == 0, chosen.stderr
    assert f"plan: {compiled}" in chosen.stderr and "pure-Triton wheel (Triton" not in chosen.stderr
