"""The effects of an install: find candidate wheels (folders, a static index), fetch one with its
sha256 checked, then one transaction: back up, pip-install, smoke-test, record.

Transactional: the files of the kernel package already installed are copied aside first, and a failed
install or smoke test puts them back. pip runs with --no-deps, so torch and triton are never touched.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_dist.act import net, smoke, transaction, warm, wheelcheck, wheelhouse
from fa_dist.act.pip import pip_install
from fa_dist.act.record import write_record
from fa_dist.containment import publish_mode, safe_filename, within
from fa_dist.decide import build_plan, index_manifest, precompiled, resolve
from fa_dist.errors import ConfigError, FaDistError, InstallFailed, WarmFailed
from fa_dist.model.environment import Environment
from fa_dist.model.wheel import Candidate
from fa_dist.paths import cache_dir

# -- sources -----------------------------------------------------------------------------------


def local_candidates(
    folder: Path, source: str, *, allow_unverified: bool = False, source_digest: str | None = None
) -> list[Candidate]:
    """Wheels in a folder; the manifest (when there is one) adds each wheel's hash and archs.
    ``source_digest``: the kernel sources this fa-dist carries; a wheel the manifest says was built
    from others is stale (fa-dist was upgraded since) and not taken."""
    if not folder.is_dir():
        raise ConfigError(f"{source} {folder} is not a folder")
    known = {e.filename: e for e in wheelhouse.read(folder)}
    found = []
    for wheel in sorted(folder.glob("*.whl")):
        entry = known.get(wheel.name)
        sha = index_manifest.valid_sha256(entry.sha256) if entry else None
        stale = build_plan.stale(entry.source_digest, source_digest) if entry else None
        found.append(
            Candidate(
                filename=wheel.name,
                location=str(wheel),
                sha256=sha,
                archs=entry.archs if entry else (),
                ptx=entry.extra.get("ptx") if entry else None,
                source=source,
                # a file the manifest does not know is the user's own; one it lists needs its hash
                problem=stale
                or (
                    index_manifest.UNVERIFIED
                    if entry and sha is None and not allow_unverified
                    else None
                ),
            )
        )
    return found


def index_candidates(
    url: str, *, allow_insecure_http: bool = False, allow_unverified: bool = False
) -> list[Candidate]:
    """A static index: ``URL/manifest.json`` lists the wheels (as `fa-dist build` writes it)."""
    base = url.rstrip("/") + "/"
    try:
        data = json.loads(
            net.read_bytes(base + wheelhouse.MANIFEST, allow_insecure_http=allow_insecure_http)
        )
    except (net.DownloadFailed, ValueError, RecursionError) as exc:
        why = exc.message if isinstance(exc, FaDistError) else f"not JSON ({exc})"
        raise ConfigError(
            f"cannot read the index manifest at {base}{wheelhouse.MANIFEST}: {why}",
            fix="check --index-url, or use --offline with a local --wheelhouse",
        ) from None
    return index_manifest.candidates(data, base=base, source=url, allow_unverified=allow_unverified)


# -- fetch -------------------------------------------------------------------------------------


def fetch(
    cand: Candidate,
    *,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    allow_insecure_http: bool = False,
    allow_unverified: bool = False,
) -> Path:
    """The wheel as a local file with a verified sha256. Downloads go through the user cache under a
    lock (two installs fetch a file once), land in a temporary file, are checked (size, sha256) and
    renamed into place, so neither a dying server nor a second install can leave a broken file."""
    if cand.problem:
        raise InstallFailed(f"{cand.filename}: {cand.problem}")
    if "://" not in cand.location:
        path = Path(cand.location)
        if cand.sha256 and wheelhouse.sha256_of(path) != cand.sha256:
            raise InstallFailed(
                f"{path} does not match its recorded sha256",
                fix="rebuild it: fa-dist build --clean",
            )
        return path
    if cand.sha256 is None and not allow_unverified:
        raise InstallFailed(f"{cand.location}: {index_manifest.UNVERIFIED}")
    limits = net.Limits.from_env(max_bytes=net.MAX_WHEEL_BYTES, exact_size=cand.size)
    if timeout is not None:
        limits = dataclasses.replace(limits, read_timeout_s=timeout)
    folder = cache_dir() / "wheels"
    cached = within(folder, safe_filename(cand.filename, what="wheel file name"))
    folder.mkdir(parents=True, exist_ok=True)
    with open(cached.with_name(cached.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.is_file() and cand.sha256 and wheelhouse.sha256_of(cached) == cand.sha256:
            return cached
        return _download(cand, cached, limits, progress, allow_insecure_http)


def _download(
    cand: Candidate,
    cached: Path,
    limits: net.Limits,
    progress: Callable[[int, int], None] | None,
    allow_insecure_http: bool,
) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=f".{cand.filename}.")
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as out:
            net.download(
                cand.location,
                out,
                limits,
                allow_insecure_http=allow_insecure_http,
                progress=progress,
            )
        got = wheelhouse.sha256_of(tmp)
        if cand.sha256 and got != cand.sha256:
            raise InstallFailed(
                f"{cand.location}: sha256 {got} does not match the index's {cand.sha256}",
                fix="the file changed or was corrupted in transit: rebuild or republish it",
            )
        publish_mode(tmp)
        tmp.replace(cached)
        return cached
    finally:
        tmp.unlink(missing_ok=True)


# -- install, backup, rollback -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Outcome:
    wheel: str
    source: str
    sha256: str
    verified: bool = True  # False: the source gave no sha256 (--allow-unverified)
    smoke: dict[str, Any] | None
    seconds: dict[str, float]
    record: str


@dataclass(frozen=True, kw_only=True)
class Options:
    run_smoke: bool = True
    smoke_timeout: float | None = None  # None: FA_DIST_SMOKE_TIMEOUT, else smoke's default
    warm: bool = True  # precompile the Triton kernels for this GPU unless the wheel brought them
    allow_insecure_http: bool = False
    allow_unverified: bool = False
    smoke_standby: smoke.Standby | None = None  # the smoke test's process, started ahead


def install(
    env: Environment,
    resolution: resolve.Resolution,
    *,
    log: Callable[[str], None],
    progress: Callable[[int, int], None] | None = None,
    options: Options | None = None,
    run_smoke: bool | None = None,
    then: Callable[[], dict[str, Any] | None] | None = None,
) -> Outcome:
    """Fetch, check, then one transaction under the target's lock: back up, pip install, smoke test,
    ``then`` (e.g. the flash-attn compat's install, which returns its record entry), record (with
    that entry); any way out before the record is written restores the backup (transaction.py)."""
    assert env.python is not None and resolution.choice is not None
    opts = options or Options()
    if run_smoke is not None:
        opts = dataclasses.replace(opts, run_smoke=run_smoke)
    python, cand = env.python.executable, resolution.choice
    timings: dict[str, float] = {}
    t = time.perf_counter()
    wheel = fetch(
        cand,
        progress=progress,
        allow_insecure_http=opts.allow_insecure_http,
        allow_unverified=opts.allow_unverified,
    )
    wheelcheck.check(wheel, cand.filename)
    timings["fetch"] = time.perf_counter() - t
    verified = cand.sha256 is not None  # fetch checked it; else the hash is only computed here
    digest = cand.sha256 or wheelhouse.sha256_of(wheel)
    target = transaction.locate(python, env.python.prefix)
    with (
        transaction.locked(target, log),
        transaction.sigterm_raises(),
        tempfile.TemporaryDirectory(prefix="fa-dist-backup-") as folder,
    ):
        saved = transaction.backup(target, Path(folder))
        with transaction.rollback_on_failure(target, saved, log):
            want = precompiled.wanted(env) if opts.warm else []
            result = _install_and_check(target, wheel, opts, log, timings, warm_for=want)
            entry = then() if then is not None else None
            smoke_data = result.data if result else None
            record = write_record(env, cand, digest, smoke_data, verified, compat_entry=entry)
    return Outcome(
        wheel=wheel.name,
        source=cand.source,
        sha256=digest,
        verified=verified,
        smoke=result.data if result else None,
        seconds=timings,
        record=str(record),
    )


def _install_and_check(
    target: transaction.Target,
    wheel: Path,
    opts: Options,
    log: Callable[[str], None],
    timings: dict[str, float],
    *,
    warm_for: Sequence[str] = (),
) -> smoke.SmokeResult | None:
    """pip install, precompile the Triton kernels (``warm_for``: the "triton-<version> <target>" groups
    this machine uses; none without a GPU), then the smoke test of exactly the installed files; raises
    on any failure but the precompile's (first calls then compile, as always)."""
    t = time.perf_counter()
    done = pip_install(target.python, wheel)
    timings["install"] = time.perf_counter() - t
    if not done.ok:
        raise InstallFailed(f"pip could not install {wheel.name}: {done.describe_failure()}")
    log(f"installed {wheel.name} ({timings['install']:.1f} s)")
    if warm_for:
        brought = stored_groups(target.sites)
        if all(w in brought for w in warm_for):
            log(f"precompile: the wheel brought {', '.join(warm_for)}")
        else:
            _precompile(target.python, log, timings)
    if not opts.run_smoke:
        return None
    t = time.perf_counter()
    result = smoke.run(
        target.python,
        quick=smoke.INSTALL_QUICK,
        timeout=opts.smoke_timeout,
        inside=target.sites,
        progress=lambda line: log(f"  {line}"),
        standby=opts.smoke_standby,
    )
    timings["smoke"] = time.perf_counter() - t
    if not result.passed:
        failed = [c for c in result.data["cases"] if not c["passed"]] or result.data["cases"]
        raise InstallFailed(
            f"the smoke test failed ({len(failed)} case(s), e.g. {failed[0]['op']} "
            f"{failed[0]['shape']}: {failed[0]['error'] or 'error too large'})",
            fix=f"see every case: fa-dist smoke --python {target.python}",
        )
    return result


def stored_groups(sites: Sequence[Path]) -> set[str]:
    """The installed fa_kernels' precompiled groups, "triton-<version> <target>", read from the files
    (asking the package would import torch: seconds)."""
    found = set()
    for manifest in (
        m for site in sites for m in (site / "fa_kernels" / "_precompiled").glob("*/manifest.json")
    ):
        try:
            data = json.loads(manifest.read_text())
            found.add(f"triton-{data['triton']} {data['target']}")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _precompile(python: str, log: Callable[[str], None], timings: dict[str, float]) -> None:
    """fa_kernels.warm --if-missing: a wheel built on a machine like this one brought its kernels;
    otherwise compile them now, in parallel, rather than in each first call. A failure only warns."""
    t = time.perf_counter()

    def every_tenth(line: str) -> None:
        parsed = re.match(r"warm: (\d+)/(\d+)", line)
        if parsed is None or "FAILED" in line or parsed[1] == parsed[2] or int(parsed[1]) % 10 == 0:
            log(f"  {line}")

    try:
        result = warm.run(python, if_missing=True, progress=every_tenth)
    except WarmFailed as exc:
        log(f"precompile: skipped ({exc}); Triton kernels compile at first use")
        return
    timings["precompile"] = time.perf_counter() - t
    data = result.data
    if "skipped" in data:
        log(f"precompile: {data['skipped']}")
    else:
        log(
            f"precompile: {data['kernels']} Triton kernels for {data['target']} ({timings['precompile']:.1f} s)"
            + (
                f", {len(result.failed)} case(s) failed: they compile at first use"
                if result.failed
                else ""
            )
        )


def gather(
    wheelhouses: Sequence[Path],
    find_links: Sequence[Path],
    index_urls: Sequence[str],
    offline: bool,
    allow_insecure_http: bool = False,
    allow_unverified: bool = False,
    source_digest: str | None = None,
) -> list[Candidate]:
    """Every candidate wheel. The wheelhouses are where fa-dist builds (their wheels are checked
    against ``source_digest``); find-links folders and indexes hold wheels made elsewhere."""
    found: list[Candidate] = []
    for folder in wheelhouses:
        if folder.is_dir():
            found += local_candidates(
                folder, "wheelhouse", allow_unverified=allow_unverified, source_digest=source_digest
            )
    for folder in find_links:
        found += local_candidates(folder, "find-links", allow_unverified=allow_unverified)
    for url in index_urls:
        if offline:
            raise ConfigError(f"--offline forbids the index {url}")
        net.check(url, allow_insecure_http=allow_insecure_http)
        found += index_candidates(
            url, allow_insecure_http=allow_insecure_http, allow_unverified=allow_unverified
        )
    return found
