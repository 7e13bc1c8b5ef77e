"""Where `fa-dist build` takes the kernel sources from: the checkout fa-dist runs from, or, for an
installed fa-dist, the fa-kernels sdist its wheel bundles (fa_dist/_bundle/, written by setup.py at
build time), checked against its recorded sha256 and unpacked once into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from fa_dist import paths
from fa_dist.errors import ConfigError

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
REINSTALL = (
    "reinstall fa-dist (pip install --force-reinstall fa-dist, or pipx reinstall fa-dist), "
    "or run it from a source checkout"
)


class Kind(Enum):
    CHECKOUT = "checkout"
    BUNDLE = "bundle"


@dataclass(frozen=True, kw_only=True)
class KernelSource:
    kind: Kind
    path: Path  # the checkout's kernels/ folder, or the bundled sdist
    version: str | None  # the bundle's fa-kernels version (a checkout's is read when planning)
    sha256: str | None  # the bundled sdist's, as recorded at build time


def locate() -> KernelSource:
    """The checkout's kernels/ when fa-dist runs from one, else the bundle; an error names the fix."""
    root = paths.checkout()
    if root is not None:
        return KernelSource(kind=Kind.CHECKOUT, path=root / "kernels", version=None, sha256=None)
    manifest = paths.bundle_dir() / BUNDLE_FILE
    if not manifest.is_file():
        raise ConfigError(
            f"this fa-dist has no kernel sources: it does not run from a source checkout and "
            f"carries no bundle ({manifest} is missing)",
            fix=REINSTALL,
        )
    data = _read_manifest(manifest)
    return KernelSource(
        kind=Kind.BUNDLE,
        path=manifest.parent / data["sdist"],
        version=data["version"],
        sha256=data["sha256"],
    )


def kernels_dir() -> Path:
    """The kernels/ folder to build from: the checkout's, or the bundled sdist unpacked (verified
    first, every time: a damaged install must not build)."""
    source = locate()
    if source.kind is Kind.CHECKOUT:
        return source.path
    verify(source)
    return unpack(source)


def verify(source: KernelSource) -> None:
    try:
        digest = hashlib.sha256(source.path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the bundled kernel sources {source.path}: {exc.strerror}", fix=REINSTALL
        ) from None
    if digest != source.sha256:
        raise ConfigError(
            f"{source.path} has sha256 {digest}, not the {source.sha256} recorded in "
            f"{BUNDLE_FILE}: this fa-dist install is damaged",
            fix=REINSTALL,
        )


def unpack(source: KernelSource) -> Path:
    """The sdist's tree under the cache, named by its hash: unpacked once, atomically (a folder
    that exists is complete), so the build's incremental state sees the same paths every time."""
    assert source.sha256 is not None
    target = paths.cache_dir() / "sources" / f"fa_kernels-{source.version}-{source.sha256[:16]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        top = _extract(source.path, Path(tmp))
        if not (top / "setup.py").is_file():
            raise ConfigError(f"{source.path} holds no setup.py under {top.name}/", fix=REINSTALL)
        try:
            os.replace(top, target)
        except OSError:
            if not target.is_dir():  # else another fa-dist unpacked the same bundle meanwhile
                raise
    return target


def describe() -> dict[str, Any]:
    """What `fa-dist doctor` reports: the source `fa-dist build` would use, or why there is none."""
    try:
        source = locate()
        if source.kind is Kind.BUNDLE:
            verify(source)
    except ConfigError as exc:
        return {"kind": None, "path": None, "version": None, "sha256": None, "problem": exc.message}
    return {
        "kind": source.kind.value,
        "path": str(source.path),
        "version": source.version,
        "sha256": source.sha256,
        "problem": None,
    }


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})", fix=REINSTALL) from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise ConfigError(
            f"{path}: not a format-{BUNDLE_FORMAT} kernel bundle manifest", fix=REINSTALL
        )
    for key in ("sdist", "version", "sha256"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: {key!r} missing or not a string", fix=REINSTALL)
    if Path(data["sdist"]).name != data["sdist"]:
        raise ConfigError(
            f"{path}: sdist {data['sdist']!r} is not a plain file name", fix=REINSTALL
        )
    return data


def _extract(archive: Path, into: Path) -> Path:
    """Unpack a .tar.gz that holds one top-level folder of plain files; return that folder."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            top = _single_top(archive, members)
            # the "data" filter (Python 3.12, backported to 3.10.12/3.11.4) also drops modes like setuid
            safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(into, members=members, **safe)
    except (OSError, tarfile.TarError) as exc:
        raise ConfigError(f"cannot unpack {archive}: {exc}", fix=REINSTALL) from None
    return into / top


def _single_top(archive: Path, members: list[tarfile.TarInfo]) -> str:
    """The one top-level folder; links, devices, absolute paths and '..' are refused (the archive
    was hashed, but unpacking stays strict anyway)."""
    for m in members:
        name = Path(m.name)
        if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
            raise ConfigError(f"{archive}: refusing archive member {m.name!r}", fix=REINSTALL)
    tops = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
    if len(tops) != 1:
        raise ConfigError(f"{archive}: expected one top-level folder, found {sorted(tops)}")
    return tops.pop()
