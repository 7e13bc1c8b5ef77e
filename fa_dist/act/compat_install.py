"""Acting on the flash-attn compat: write its wheel, install it beside fa-kernels, smoke-test it
through flash_attn's names, record it, roll it back, and remove it again.

`fa-dist install --flash-attn-compat` runs `CompatStep` inside the fa-kernels install's transaction
(install.install's ``then``): a failure here restores the previous compat (or none), and the caller
then restores the previous fa-kernels.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_dist import subproc
from fa_dist.act import smoke, transaction, wheelhouse
from fa_dist.act.pip import pip_install
from fa_dist.act.record import COMPAT_KEY, RECORD_NAME, read_record, write_atomic
from fa_dist.containment import publish
from fa_dist.decide.compat import wheel_bytes
from fa_dist.errors import ConfigError, InstallFailed, ProbeFailed
from fa_dist.model import compat
from fa_dist.model.environment import Environment
from fa_dist.paths import cache_dir

COMPAT = transaction.Owned(name=compat.DIST, package_dir="flash_attn")


@dataclass(frozen=True, kw_only=True)
class CompatOutcome:
    wheel: str
    version: str
    sha256: str
    smoke: dict[str, Any] | None
    seconds: dict[str, float]


class CompatStep:
    """Install the compat made for ``fa_kernels_version`` into ``env``'s interpreter: build ->
    install -> smoke, restoring the previous compat when install or smoke fails."""

    def __init__(
        self,
        env: Environment,
        fa_kernels_version: str,
        *,
        smoke: bool,
        log: Callable[[str], None],
        smoke_timeout: float | None = None,  # None: FA_DIST_SMOKE_TIMEOUT, else smoke's default
    ) -> None:
        assert env.python is not None
        self.env, self.python, self.prefix = env, env.python.executable, env.python.prefix
        self.fa_kernels_version, self.smoke, self.log = fa_kernels_version, smoke, log
        self.smoke_timeout = smoke_timeout
        self.outcome: CompatOutcome | None = None
        self.entry: dict[str, Any] | None = None  # its record entry, once installed

    def run(self) -> dict[str, Any]:
        """Install the compat; its record entry, which the caller writes in the same transaction."""
        started = time.perf_counter()
        wheel = write_wheel(self.fa_kernels_version, cache_dir() / "flash-attn-compat")
        digest = wheelhouse.sha256_of(wheel)
        seconds = {"build": time.perf_counter() - started}
        self.log(f"flash-attn compat: built {wheel.name} (sha256 {digest[:12]}...)")
        target = transaction.locate(self.python, self.prefix)
        with tempfile.TemporaryDirectory(prefix="fa-dist-compat-backup-") as folder:
            saved = transaction.backup(target, Path(folder), COMPAT)
            with transaction.rollback_on_failure(target, saved, self.log):
                result = self._install_and_check(wheel, seconds)
        self.outcome = CompatOutcome(
            wheel=wheel.name,
            version=compat.version_for(self.fa_kernels_version),
            sha256=digest,
            smoke=result,
            seconds=seconds,
        )
        self.entry = record_entry(self.outcome)
        return self.entry

    def _install_and_check(self, wheel: Path, seconds: dict[str, float]) -> dict[str, Any] | None:
        """pip install, then the smoke test through flash_attn's names; raises on any failure (the
        caller's transaction restores the previous compat)."""
        t = time.perf_counter()
        done = pip_install(self.python, wheel)
        seconds["install"] = time.perf_counter() - t
        if not done.ok:
            raise InstallFailed(f"pip could not install {wheel.name}: {done.describe_failure()}")
        if not self.smoke:
            return None
        t = time.perf_counter()
        result = run_smoke(self.python, timeout=self.smoke_timeout)
        seconds["smoke"] = time.perf_counter() - t
        if not result["passed"]:
            raise InstallFailed(
                f"the flash-attn compat's smoke test failed ({describe_failures(result)})",
                fix=f"run it by hand to see everything: {self.python} -m {compat.SMOKE_MODULE}"
                + (
                    "; or allow more time: --smoke-timeout SECONDS"
                    if result.get("timed_out")
                    else ""
                ),
            )
        self.log(f"flash-attn compat: smoke passed on {result['device']}")
        if result.get("stand_ins"):
            missing = ", ".join(result["stand_ins"])
            self.log(f"flash-attn compat: this fa-kernels lacks (they raise): {missing}")
        return result


TOP_FIELDS: dict[str, type | tuple[type, ...]] = {"passed": bool, "device": str, "cases": list}
CASE_FIELDS: dict[str, type | tuple[type, ...]] = {"name": str, "passed": bool, "detail": str}


def run_smoke(python: str, *, timeout: float | None = None) -> dict[str, Any]:
    """The compat's smoke test in the target interpreter, isolated (-I) and from an empty folder so
    that only the installed files import; a crash, a non-zero exit or output that is no well-typed
    result becomes a failure. ``timeout``: as for fa-kernels' smoke test (smoke.timeout_from)."""
    limit = smoke.timeout_from(timeout)
    with tempfile.TemporaryDirectory(prefix="fa-dist-compat-smoke-") as neutral:
        done = subproc.run([python, "-I", "-m", compat.SMOKE_MODULE], timeout=limit, cwd=neutral)
    data = _parse_result(done.stdout)
    if data is not None:
        passed = data["passed"] and all(c["passed"] for c in data["cases"])
        return {**data, "passed": passed and done.returncode == 0}
    why = done.error or "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
    return {
        "passed": False,
        "device": "?",
        "cases": [{"name": "run", "passed": False, "detail": f"gave no result: {why}"}],
        "timed_out": (done.error or "").startswith("timed out"),
    }


def _parse_result(stdout: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object, when it is a complete result: bool passed, str
    device, and a non-empty list of cases each with str name, bool passed and str detail."""
    for line in reversed(stdout.splitlines()):
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            continue
        return data if _valid(data) else None
    return None


def _valid(data: object) -> bool:
    if not isinstance(data, dict) or not smoke.has_fields(data, TOP_FIELDS):
        return False
    cases = data["cases"]
    return (
        bool(cases)
        and all(isinstance(c, dict) and smoke.has_fields(c, CASE_FIELDS) for c in cases)
        and _strings(data.get("stand_ins", []))
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def describe_failures(result: dict[str, Any]) -> str:
    failed = [c for c in result.get("cases", []) if not c["passed"]]
    return (
        "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
        or "every case passed, but it exited with an error"
    )


# -- the wheel --------------------------------------------------------------------------------


def write_wheel(fa_kernels_version: str, folder: Path) -> Path:
    """The compat wheel for this fa-kernels (decide/compat.py makes its bytes) in ``folder``,
    replacing any file of that name atomically, with the mode a plain open() gives (umask), not
    mkstemp's 0600, like every file fa-dist publishes."""
    name, data = wheel_bytes(fa_kernels_version)
    return publish(folder / name, data)


# -- the record --------------------------------------------------------------------------------


def record_entry(outcome: CompatOutcome) -> dict[str, Any]:
    smoke = outcome.smoke
    return {
        "wheel": outcome.wheel,
        "version": outcome.version,
        "sha256": outcome.sha256,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": {"passed": smoke["passed"], "device": smoke["device"]} if smoke else None,
        "stand_ins": smoke.get("stand_ins", []) if smoke else None,
    }


def summary(entry: dict[str, Any]) -> str:
    """One line for people: the record entry of an installed compat."""
    smoke = entry.get("smoke") or {}
    checked = f"smoke passed on {smoke['device']}" if smoke.get("passed") else "smoke not run"
    return f"{entry['wheel']} (sha256 {entry['sha256'][:12]}..., {checked})"


def write_record(prefix: str, entry: dict[str, Any] | None) -> Path:
    """Set (or, with None, drop) the compat's entry in the install record, keeping the rest
    (atomically). An install writes the entry with fa-kernels' record (record.write_record)."""
    path = Path(prefix) / RECORD_NAME
    record = read_record(prefix)
    if record is None and entry is None:
        return path
    record = record or {}
    if entry is None:
        record.pop(COMPAT_KEY, None)
    else:
        record[COMPAT_KEY] = entry
    return write_atomic(path, record)


# -- removal -----------------------------------------------------------------------------------


def uninstall(python: str, *, compat_only: bool, log: Callable[[str], None]) -> list[str]:
    """Remove the compat (and, unless ``compat_only``, fa-kernels and the install record): what
    fa-dist installed, nothing else. Returns the distributions removed."""
    prefix, installed = _installed(python)
    upstream = compat.DIST in installed and not installed[compat.DIST]["compat"]
    if upstream and compat_only:
        real = installed[compat.DIST]
        raise ConfigError(
            f"flash-attn {real['version']} at {real['location'] or '?'} is the upstream package, "
            "not fa-dist's compat: fa-dist leaves it alone",
            fix=f"remove it with pip if you mean to: {python} -m pip uninstall -y flash-attn",
        )
    targets = ([] if upstream else [compat.DIST]) + ([] if compat_only else ["fa-kernels"])
    # the install lock, so that an install into the same environment never runs half-way through this
    with transaction.locked(transaction.locate(python, prefix), log):
        return _remove(
            python, prefix, [d for d in targets if d in installed], installed, compat_only, log
        )


def _remove(
    python: str,
    prefix: str,
    dists: list[str],
    installed: dict[str, dict[str, Any]],
    compat_only: bool,
    log: Callable[[str], None],
) -> list[str]:
    removed = []
    for dist in dists:
        done = subproc.run([python, "-m", "pip", "uninstall", "-y", dist], timeout=300)
        if not done.ok:
            raise InstallFailed(f"pip could not remove {dist}: {done.describe_failure()}")
        log(f"removed {dist} {installed[dist]['version']}")
        removed.append(dist)
    if compat_only:
        write_record(prefix, None)
    else:
        (Path(prefix) / RECORD_NAME).unlink(missing_ok=True)
    return removed


def _installed(python: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The target's prefix and its kernel distributions (name -> version, location, compat), from the
    probe's python section alone: removing packages needs neither torch nor the host's tools."""
    from fa_dist.facts.detect import probe

    found = probe(python, "python", timeout=60)
    if "error" in found:
        raise ProbeFailed(
            f"cannot run the probe with {python}: {found['error']}",
            fix="pass --python with a working interpreter (python3.10+)",
        )
    dists = {d["name"]: dict(d) for d in found["dists"]}
    if compat.DIST in dists:
        dists[compat.DIST]["compat"] = _has_marker(dists[compat.DIST]["location"])
    return str(found["prefix"]), dists


def _has_marker(location: str | None) -> bool:
    try:
        marker = json.loads((Path(location or "") / compat.MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("provider") == compat.PROVIDER
