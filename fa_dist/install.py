"""`fa-dist install`: detect -> resolve -> fetch | build -> install -> smoke -> record, each a short step.

Transactional: the files of the kernel package already installed are copied aside first, and a failed
install or smoke test puts them back. pip runs with --no-deps, so torch and triton are never touched.
"""

from __future__ import annotations

import datetime
import fcntl
import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_dist import resolve, smoke, subproc, wheelhouse
from fa_dist.environment import Environment
from fa_dist.errors import ConfigError, FaDistError
from fa_dist.paths import cache_dir

RECORD_NAME = "fa-dist-install.json"
COMPAT_KEY = "flash_attn_compat"  # the flash-attn compat's entry in the record (compat_install.py)


class NoMatchingWheel(FaDistError):
    exit_code = 7


class InstallFailed(FaDistError):
    exit_code = 8


# -- sources -----------------------------------------------------------------------------------


def local_candidates(folder: Path, source: str) -> list[resolve.Candidate]:
    """Wheels in a folder; the manifest (when there is one) adds each wheel's hash and archs."""
    if not folder.is_dir():
        raise ConfigError(f"{source} {folder} is not a folder")
    known = {e.filename: e for e in wheelhouse.read(folder)}
    found = []
    for wheel in sorted(folder.glob("*.whl")):
        entry = known.get(wheel.name)
        found.append(
            resolve.Candidate(
                filename=wheel.name,
                location=str(wheel),
                sha256=entry.sha256 if entry else None,
                archs=entry.archs if entry else (),
                ptx=entry.extra.get("ptx") if entry else None,
                source=source,
            )
        )
    return found


def index_candidates(url: str, *, timeout: float = 20) -> list[resolve.Candidate]:
    """A static index: ``URL/manifest.json`` lists the wheels (as `fa-dist build` writes it)."""
    base = url.rstrip("/") + "/"
    try:
        with urllib.request.urlopen(base + wheelhouse.MANIFEST, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, OSError) as exc:
        raise ConfigError(
            f"cannot read the index manifest at {base}{wheelhouse.MANIFEST}: {exc}",
            fix="check --index-url, or use --offline with a local --wheelhouse",
        ) from None
    return [
        resolve.Candidate(
            filename=w["filename"],
            location=base + w["filename"],
            sha256=w["sha256"],
            archs=tuple(w.get("archs", ())),
            ptx=w.get("extra", {}).get("ptx"),
            source=url,
        )
        for w in data.get("wheels", [])
    ]


# -- fetch -------------------------------------------------------------------------------------


def fetch(
    cand: resolve.Candidate,
    *,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The wheel as a local file with a verified sha256. Downloads go through the user cache under a
    lock (two installs fetch a file once), land in a temporary file, are checked (length, sha256) and
    renamed into place, so neither a dying server nor a second install can leave a broken file."""
    if "://" not in cand.location:
        path = Path(cand.location)
        if cand.sha256 and wheelhouse.sha256_of(path) != cand.sha256:
            raise InstallFailed(
                f"{path} does not match its recorded sha256",
                fix="rebuild it: fa-dist build --clean",
            )
        return path
    timeout = timeout if timeout is not None else float(os.environ.get("FA_DIST_TIMEOUT", "60"))
    cached = cache_dir() / "wheels" / cand.filename
    cached.parent.mkdir(parents=True, exist_ok=True)
    with open(cached.with_name(cached.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.is_file() and (
            cand.sha256 is None or wheelhouse.sha256_of(cached) == cand.sha256
        ):
            return cached
        return _download(cand, cached, timeout, progress)


def _download(
    cand: resolve.Candidate,
    cached: Path,
    timeout: float,
    progress: Callable[[int, int], None] | None,
) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=f".{cand.filename}.")
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(cand.location, timeout=timeout) as resp, open(fd, "wb") as out:
            total, done = int(resp.headers.get("Content-Length") or 0), 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if total and done != total:
            raise InstallFailed(
                f"download of {cand.location} ended after {done} of {total} bytes",
                fix="the server stopped mid-transfer: run the install again",
            )
        got = wheelhouse.sha256_of(tmp)
        if cand.sha256 and got != cand.sha256:
            raise InstallFailed(
                f"{cand.location}: sha256 {got} does not match the index's {cand.sha256}",
                fix="the file changed or was corrupted in transit: rebuild or republish it",
            )
        tmp.replace(cached)
        return cached
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        raise InstallFailed(
            f"cannot download {cand.location}: {exc or type(exc).__name__}",
            fix="check the index, or raise FA_DIST_TIMEOUT (seconds) for a slow server",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


# -- install, backup, rollback -----------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    site: Path | None
    folder: Path | None
    files: tuple[str, ...]
    version: str | None


def backup_installed(env: Environment, into: Path, dist: str = "fa-kernels") -> Backup:
    """Copy aside every file the installed ``dist`` owns (its RECORD), editable installs included."""
    pkg = env.package(dist)
    if pkg is None or not pkg.location:
        return Backup(site=None, folder=None, files=(), version=None)
    site = Path(pkg.location)
    records = list(site.glob(f"{dist.replace('-', '_')}-*.dist-info/RECORD"))
    if not records:
        return Backup(site=site, folder=None, files=(), version=pkg.version)
    files = []
    for line in records[0].read_text().splitlines():
        rel = line.split(",")[0]
        src = site / rel
        if rel and src.is_file():
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / rel)
            files.append(rel)
    return Backup(site=site, folder=into, files=tuple(files), version=pkg.version)


def pip_install(python: str, wheel: Path) -> subproc.Completed:
    return subproc.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--force-reinstall",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        timeout=600,
    )


def rollback(python: str, backup: Backup, dist: str = "fa-kernels") -> str:
    subproc.run([python, "-m", "pip", "uninstall", "-y", dist], timeout=300)
    if backup.folder is None or backup.site is None:
        return f"removed the new {dist} (none was installed before)"
    for rel in backup.files:
        (backup.site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup.folder / rel, backup.site / rel)
    return f"restored {dist} {backup.version}"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    wheel: str
    source: str
    sha256: str
    smoke: dict[str, Any] | None
    seconds: dict[str, float]
    record: str


def install(
    env: Environment,
    resolution: resolve.Resolution,
    *,
    run_smoke: bool,
    log: Callable[[str], None],
    progress: Callable[[int, int], None] | None = None,
    then: Callable[[], None] | None = None,
) -> Outcome:
    """``then`` (e.g. the flash-attn compat's install) runs in the same transaction: when it fails,
    the fa-kernels install is rolled back too."""
    assert env.python is not None and resolution.choice is not None
    python, cand = env.python.executable, resolution.choice
    timings: dict[str, float] = {}
    t = time.perf_counter()
    wheel = fetch(cand, progress=progress)
    timings["fetch"] = time.perf_counter() - t
    digest = cand.sha256 or wheelhouse.sha256_of(wheel)  # fetch verified a recorded hash
    with tempfile.TemporaryDirectory(prefix="fa-dist-backup-") as folder:
        backup = backup_installed(env, Path(folder))
        t = time.perf_counter()
        done = pip_install(python, wheel)
        timings["install"] = time.perf_counter() - t
        if not done.ok:
            undone = rollback(python, backup)
            raise InstallFailed(
                f"pip could not install {wheel.name}: {done.describe_failure()}; {undone}"
            )
        log(f"installed {wheel.name} ({timings['install']:.1f} s)")
        result = None
        if run_smoke:
            t = time.perf_counter()
            try:
                result = smoke.run(python, quick=True)
            except smoke.SmokeFailed as exc:
                undone = rollback(python, backup)
                raise InstallFailed(f"{exc.message}; {undone}", fix=exc.fix) from None
            timings["smoke"] = time.perf_counter() - t
            if not result.passed:
                undone = rollback(python, backup)
                failed = [c for c in result.data["cases"] if not c["passed"]]
                raise InstallFailed(
                    f"the smoke test failed ({len(failed)} case(s), e.g. {failed[0]['op']} "
                    f"{failed[0]['shape']}: {failed[0]['error'] or 'error too large'}); {undone}",
                    fix=f"see every case: fa-dist smoke --python {python}",
                )
        if then is not None:
            try:
                then()
            except FaDistError as exc:
                undone = rollback(python, backup)
                raise InstallFailed(f"{exc.message}; {undone}", fix=exc.fix) from None
    record = write_record(env, cand, digest, result.data if result else None)
    return Outcome(
        wheel=wheel.name,
        source=cand.source,
        sha256=digest,
        smoke=result.data if result else None,
        seconds=timings,
        record=str(record),
    )


def write_record(
    env: Environment, cand: resolve.Candidate, digest: str, smoke_data: dict[str, Any] | None
) -> Path:
    assert env.python is not None
    path = Path(env.python.prefix) / RECORD_NAME
    previous = read_record(env.python.prefix) or {}
    record = {
        "wheel": cand.filename,
        "source": cand.source,
        "location": cand.location,
        "sha256": digest,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": {"passed": smoke_data["passed"], "device": smoke_data["device"]}
        if smoke_data
        else None,
    }
    if COMPAT_KEY in previous:  # the flash-attn compat stays installed over a new fa-kernels
        record[COMPAT_KEY] = previous[COMPAT_KEY]
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_record(prefix: str) -> dict[str, Any] | None:
    path = Path(prefix) / RECORD_NAME
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def gather(
    wheelhouses: Sequence[Path],
    find_links: Sequence[Path],
    index_urls: Sequence[str],
    offline: bool,
    allow_insecure_http: bool = False,
) -> list[resolve.Candidate]:
    found: list[resolve.Candidate] = []
    for folder in wheelhouses:
        if folder.is_dir():
            found += local_candidates(folder, "wheelhouse")
    for folder in find_links:
        found += local_candidates(folder, "find-links")
    for url in index_urls:
        if offline:
            raise ConfigError(f"--offline forbids the index {url}")
        if url.startswith("http://") and not _local_host(url) and not allow_insecure_http:
            raise ConfigError(
                f"{url} is plain http to a non-local host",
                fix="use https, or pass --allow-insecure-http if you trust the network",
            )
        found += index_candidates(url)
    return found


def _local_host(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")
