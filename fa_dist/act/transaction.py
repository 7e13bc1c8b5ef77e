"""One install transaction into one target environment: a lock for the whole of it, a backup of
every file the installed fa-kernels owns, and a restore that runs on every way out (an error, bad
smoke output, KeyboardInterrupt, SIGTERM) with both signals held off while it runs.

Everything here is in-process file work (no pip), so a rollback cannot itself be interrupted or fail
to start; every path derived from a RECORD line is checked to lie inside the target environment and
the backup is stored under numbered names, so nothing lands outside the backup folder."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fa_dist import subproc
from fa_dist.containment import is_within
from fa_dist.errors import FaDistError, InstallFailed, ProbeFailed
from fa_dist.paths import cache_dir

LOCK_NAME = ".fa-dist-install.lock"

_SITES = "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps([p['purelib'], p['platlib']]))"


@dataclass(frozen=True)
class Owned:
    """A distribution a transaction backs up and restores: its name, import package and dist-info."""

    name: str
    package_dir: str

    @property
    def dist_info_glob(self) -> str:
        return f"{self.name.replace('-', '_')}-*.dist-info"


FA_KERNELS = Owned(name="fa-kernels", package_dir="fa_kernels")


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the rollback runs."""


@dataclass(frozen=True)
class Target:
    python: str
    prefix: Path
    sites: tuple[Path, ...]  # purelib and platlib (one folder in most environments)


def locate(python: str, prefix: str) -> Target:
    """The target's site-packages folders, asked of the interpreter itself (isolated mode)."""
    done = subproc.run([python, "-I", "-c", _SITES], timeout=60)
    try:
        paths = json.loads(done.stdout.strip().splitlines()[-1])
        sites = tuple(dict.fromkeys(Path(p) for p in paths))
    except (IndexError, ValueError, TypeError):
        raise ProbeFailed(
            f"cannot ask {python} for its site-packages: {done.describe_failure()}"
        ) from None
    return Target(python=python, prefix=Path(prefix), sites=sites)


@contextlib.contextmanager
def locked(target: Target, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the target's install lock (a file in the environment, else in the cache keyed by it)."""
    path = target.prefix / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        key = hashlib.sha256(str(target.prefix.resolve()).encode()).hexdigest()[:24]
        path = cache_dir() / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another fa-dist install into {target.prefix} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated (main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (a restore must not stop half way)."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- what the installed package owns -------------------------------------------------------------


def dist_infos(target: Target, owned: Owned = FA_KERNELS) -> list[Path]:
    found = {p for site in target.sites for p in site.glob(owned.dist_info_glob) if p.is_dir()}
    return sorted(found)


def owned_files(target: Target, dist_info: Path, owned: Owned = FA_KERNELS) -> list[Path]:
    """Files a dist-info's RECORD lists that lie inside the environment (a console script in bin/
    does; an absolute or ``..`` path leaving the prefix is ignored), plus the package folder's files."""
    found: dict[Path, None] = {}
    try:
        with (dist_info / "RECORD").open(newline="", errors="replace") as f:
            rows = list(csv.reader(f))
    except (OSError, csv.Error):
        rows = []
    for row in rows:
        if not row or not row[0] or "\x00" in row[0]:
            continue
        path = Path(os.path.normpath(dist_info.parent / row[0]))
        if is_within(target.prefix, path) or any(is_within(s, path) for s in target.sites):
            found[path] = None
    for site in target.sites:
        package = site / owned.package_dir
        if package.is_dir() and not package.is_symlink():
            found.update(
                (p, None) for p in sorted(package.rglob("*")) if "__pycache__" not in p.parts
            )
    return [p for p in found if p.is_file() or p.is_symlink()]


@dataclass(frozen=True)
class Backup:
    folder: Path
    files: tuple[tuple[Path, str], ...]  # (where the file lives in the environment, its name here)
    version: str | None
    owned: Owned = FA_KERNELS


def backup(target: Target, into: Path, owned: Owned = FA_KERNELS) -> Backup:
    """Copy aside every file the installed ``owned`` distribution has, under numbered names inside
    ``into``."""
    files: list[tuple[Path, str]] = []
    version = None
    prefix = owned.dist_info_glob.split("*")[0]
    for info in dist_infos(target, owned):
        version = info.name[len(prefix) : -len(".dist-info")]
        for path in owned_files(target, info, owned) + sorted(
            p for p in info.rglob("*") if p.is_file()
        ):
            if any(path == seen for seen, _ in files):
                continue
            name = f"{len(files):06d}"
            shutil.copy2(path, into / name, follow_symlinks=False)
            files.append((path, name))
    return Backup(folder=into, files=tuple(files), version=version, owned=owned)


def remove_installed(target: Target, owned: Owned = FA_KERNELS) -> None:
    """Uninstall in-process: every file the distribution's dist-infos own, the dist-infos (stray ones
    pip left behind included) and the package folder."""
    for info in dist_infos(target, owned):
        for path in owned_files(target, info, owned):
            path.unlink(missing_ok=True)
        shutil.rmtree(info, ignore_errors=True)
    for site in target.sites:
        package = site / owned.package_dir
        if package.is_dir() and not package.is_symlink():
            shutil.rmtree(package, ignore_errors=True)


def restore(target: Target, saved: Backup) -> str:
    """Put the environment back as ``saved`` found it; says what it did."""
    remove_installed(target, saved.owned)
    for path, name in saved.files:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(saved.folder / name, path, follow_symlinks=False)
    if not saved.files:
        return f"removed the new {saved.owned.name} (none was installed before)"
    return f"restored {saved.owned.name} {saved.version}"


@contextlib.contextmanager
def rollback_on_failure(
    target: Target, saved: Backup, log: Callable[[str], None]
) -> Iterator[None]:
    """Any way out of the block but its end restores ``saved``; fa-dist errors become InstallFailed
    (exit 8) naming what was restored, interrupts are re-raised after a line saying so."""
    try:
        yield
    except BaseException as exc:
        with signals_held():
            undone = restore(target, saved)
        if isinstance(exc, FaDistError):
            raise InstallFailed(f"{exc.message}; {undone}", fix=exc.fix) from None
        log(f"interrupted ({type(exc).__name__}): {undone}")
        raise
