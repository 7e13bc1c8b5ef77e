"""What a wheel file says about itself must match its file name: the project name and version in its
``.dist-info/METADATA`` (pip installs by the metadata; fa-dist records by the file name)."""

from __future__ import annotations

import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from fa_dist.errors import InstallFailed

MAX_METADATA_BYTES = 1 << 20


def metadata_of(path: Path) -> tuple[str, str]:
    """(Name, Version) from the wheel's one top-level ``*.dist-info/METADATA``."""
    try:
        with zipfile.ZipFile(path) as zf:
            found = [
                i
                for i in zf.infolist()
                if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/METADATA")
            ]
            if len(found) != 1:
                raise InstallFailed(
                    f"{path.name}: expected one .dist-info/METADATA, found {len(found)}"
                )
            if found[0].file_size > MAX_METADATA_BYTES:
                raise InstallFailed(f"{path.name}: its METADATA is implausibly large")
            text = zf.read(found[0]).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InstallFailed(f"{path.name} is not a readable wheel (zip): {exc}") from None
    headers = HeaderParser().parsestr(text)
    return str(headers.get("Name") or ""), str(headers.get("Version") or "")


def check(path: Path, filename: str) -> None:
    """InstallFailed unless the metadata's name and version are the file name's."""
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise InstallFailed(f"{filename} is not a wheel file name: {exc}") from None
    meta_name, meta_version = metadata_of(path)
    try:
        same_version = Version(meta_version) == version
    except InvalidVersion:
        same_version = False
    if canonicalize_name(meta_name) != name or not same_version:
        raise InstallFailed(
            f"{filename} contains {meta_name or '?'} {meta_version or '?'} "
            f"(its file name says {name} {version})",
            fix="the file was renamed or tampered with: rebuild or republish it",
        )
