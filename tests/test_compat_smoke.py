"""The flash-attn compat's smoke test as install reads it: fake interpreters that print hostile or
incomplete results, exit non-zero or hang give a failed result (install: exit 8 with a rollback),
never a traceback; the time limit is --smoke-timeout / FA_DIST_SMOKE_TIMEOUT, as for fa-kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fa_dist import subproc
from fa_dist.act import compat_install
from fa_dist.errors import ConfigError, InstallFailed

from .envs import CPU, mutate

GOOD_CASE = {"name": "attention through flash_attn", "passed": True, "detail": "ok"}


class FakeRun:
    """Stands in for subproc.run: what the target interpreter printed, and the limit it was given."""

    def __init__(self, stdout: str = "", *, code: int | None = 0, error: str | None = None) -> None:
        self.stdout, self.code, self.error = stdout, code, error
        self.timeouts: list[float] = []

    def __call__(self, argv: list[str], *, timeout: float, cwd: str) -> subproc.Completed:
        self.timeouts.append(timeout)
        return subproc.Completed(tuple(argv), self.code, self.stdout, "", error=self.error)


def fake_python(monkeypatch: pytest.MonkeyPatch, stdout: str = "", **kw: object) -> FakeRun:
    fake = FakeRun(stdout, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(compat_install.subproc, "run", fake)
    return fake


@pytest.mark.parametrize("result", [
    {"passed": True, "cases": [{"name": "x"}]},  # no device, a case without passed/detail
    {"passed": False, "device": "cpu", "cases": ["boom"]},  # a case that is no object
    {"passed": True, "device": 3, "cases": [GOOD_CASE]},
    {"passed": True, "device": "cpu", "cases": [{**GOOD_CASE, "passed": "yes"}]},
    {"passed": True, "device": "cpu", "cases": [{**GOOD_CASE, "name": None}]},
    {"passed": True, "device": "cpu", "cases": [{**GOOD_CASE, "detail": ["x"]}]},
    {"passed": True, "device": "cpu", "cases": []},
    {"passed": True, "device": "cpu", "cases": [GOOD_CASE], "stand_ins": [1]},
    [True],
])
def test_an_ill_typed_result_is_a_failure_not_a_crash(monkeypatch: pytest.MonkeyPatch, result: object) -> None:
    fake_python(monkeypatch, "progress\n" + json.dumps(result))
    got = compat_install.run_smoke("python")
    assert got["passed"] is False and got["device"] == "?"
    assert "gave no result" in compat_install.describe_failures(got)


@pytest.mark.parametrize(("result", "code"), [
    ({"passed": True, "device": "cpu", "cases": [{**GOOD_CASE, "passed": False}]}, 0),
    ({"passed": False, "device": "cpu", "cases": [GOOD_CASE]}, 0),
    ({"passed": True, "device": "cpu", "cases": [GOOD_CASE]}, 1),
])
def test_passed_needs_the_result_every_case_and_exit_0(
        monkeypatch: pytest.MonkeyPatch, result: dict[str, object], code: int) -> None:
    fake_python(monkeypatch, json.dumps(result), code=code)
    got = compat_install.run_smoke("python")
    assert got["passed"] is False and got["device"] == "cpu"
    assert compat_install.describe_failures(got)


def test_a_complete_passing_result_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    result = {"passed": True, "device": "cpu", "cases": [GOOD_CASE], "stand_ins": ["flash_attn.x"]}
    fake_python(monkeypatch, json.dumps(result))
    assert compat_install.run_smoke("python") == result


def test_the_time_limit_is_the_flag_else_the_environment_else_600(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_python(monkeypatch, code=None, error="timed out after 5s")
    got = compat_install.run_smoke("python", timeout=5)
    assert got["passed"] is False and "timed out after 5s" in compat_install.describe_failures(got)
    monkeypatch.setenv("FA_DIST_SMOKE_TIMEOUT", "7")
    compat_install.run_smoke("python")
    compat_install.run_smoke("python", timeout=9)
    monkeypatch.delenv("FA_DIST_SMOKE_TIMEOUT")
    compat_install.run_smoke("python")
    assert fake.timeouts == [5, 7, 9, 600]
    monkeypatch.setenv("FA_DIST_SMOKE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="FA_DIST_SMOKE_TIMEOUT='soon'"):
        compat_install.run_smoke("python")


def test_the_install_step_passes_the_timeout_and_its_fix_names_the_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_python(monkeypatch, code=None, error="timed out after 1s")
    env = mutate(CPU(), python__prefix=str(tmp_path))
    monkeypatch.setattr(compat_install, "pip_install", lambda python, wheel: subproc.Completed((), 0, "", ""))
    step = compat_install.CompatStep(env, "0.1.0", smoke=True, log=lambda line: None, smoke_timeout=1)
    with pytest.raises(InstallFailed, match="timed out after 1s") as failed:
        step._install_and_check(tmp_path / "x.whl", {})
    assert "--smoke-timeout SECONDS" in (failed.value.fix or "") and fake.timeouts == [1]
