"""Path containment: every path fa-dist derives from an external name (a manifest's filename, a
RECORD line, an index link) goes through here, so nothing it writes or reads lands outside the folder
that name belongs to. Also the file modes of what fa-dist publishes (umask-respecting, not mkstemp's 0600)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from fa_dist.errors import ConfigError


class UnsafePath(ConfigError):
    """An external name that would leave its folder (``..``, an absolute path, a separator...)."""


# one path segment: no separators, no NUL or control characters, not "." or "..", not hidden
_SEGMENT = re.compile(r"[^/\\\x00-\x1f\x7f]+")


def safe_filename(name: object, *, what: str = "file name") -> str:
    """``name`` when it is a plain file name (one segment, not hidden), else UnsafePath."""
    if (
        not isinstance(name, str)
        or not _SEGMENT.fullmatch(name)
        or name.startswith(".")
        or len(name) > 255
    ):
        raise UnsafePath(
            f"unsafe {what} {name!r}: expected a plain file name (no folders, no '..')",
            fix="the manifest or index was written by something other than fa-dist: do not use it",
        )
    return name


def within(root: Path, relative: str | Path) -> Path:
    """``root / relative`` resolved, refusing anything that leaves ``root`` (``..``, absolute paths,
    symlinks out); the result is absolute."""
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a symlink loop
        raise UnsafePath(f"{str(relative)!r} is not a usable path") from None
    if not target.is_relative_to(base):
        raise UnsafePath(f"{str(relative)!r} leaves {base}")
    return target


def is_within(root: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies inside ``root`` (False for an unusable path)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: Path, *, executable: bool = False) -> None:
    """Give a file fa-dist created through mkstemp (0600) the mode a plain open() would have."""
    os.chmod(path, (0o777 if executable else 0o666) & ~umask())


def publish(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` in one rename (a reader sees the old file or the new one, never
    half of one), with the mode a plain open() gives; the temporary file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        publish_mode(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
