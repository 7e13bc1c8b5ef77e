"""An index's manifest.json -> candidates, entry by entry: a bad entry becomes a candidate rejected with
its reason (or is named and skipped when even its file name is unusable), never a crash.

A wheel without a valid sha256 is refused unless the user asked for unverified downloads
(``--allow-unverified``); a file name must be a plain name (containment.safe_filename)."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from fa_dist.containment import UnsafePath, safe_filename
from fa_dist.errors import ConfigError
from fa_dist.model.wheel import Candidate

SHA256 = re.compile(r"[0-9a-f]{64}")
UNVERIFIED = "the manifest gives no valid sha256 (pass --allow-unverified to install it anyway)"


def valid_sha256(value: object) -> str | None:
    return value if isinstance(value, str) and SHA256.fullmatch(value) else None


def candidates(
    data: Any, *, base: str, source: str, allow_unverified: bool = False
) -> list[Candidate]:
    """Every usable-or-rejected candidate a manifest lists; ConfigError when it is not a manifest."""
    wheels = data.get("wheels") if isinstance(data, dict) else None
    if not isinstance(wheels, list):
        raise ConfigError(f"{base}manifest.json: expected an object with a list under 'wheels'")
    found = []
    for i, entry in enumerate(wheels):
        cand = _candidate(entry, base=base, source=source, allow_unverified=allow_unverified)
        found.append(cand or _unusable(i, entry, source))
    return found


def _unusable(i: int, entry: Any, source: str) -> Candidate:
    name = entry.get("filename") if isinstance(entry, dict) else None
    shown = repr(name)[:80] if name is not None else f"wheels[{i}]"
    return Candidate(
        filename=f"wheels[{i}] {shown}",
        location="",
        sha256=None,
        source=source,
        problem="unusable manifest entry: not an object with a plain 'filename'",
    )


def _candidate(entry: Any, *, base: str, source: str, allow_unverified: bool) -> Candidate | None:
    if not isinstance(entry, dict):
        return None
    try:
        name = safe_filename(entry.get("filename"), what="wheel file name")
    except UnsafePath:
        return None
    problems = []
    sha = valid_sha256(entry.get("sha256"))
    if sha is None and not allow_unverified:
        problems.append(UNVERIFIED)
    size = entry.get("size")
    if size is not None and (type(size) is not int or size <= 0):
        problems.append(f"size {size!r} is not a positive integer")
        size = None
    archs = entry.get("archs", [])
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        problems.append("archs is not a list of strings")
        archs = []
    extra = entry.get("extra", {})
    if not isinstance(extra, dict):
        problems.append("extra is not an object")
        extra = {}
    ptx = extra.get("ptx")
    if ptx is not None and not isinstance(ptx, str):
        problems.append("extra.ptx is not a string")
        ptx = None
    return Candidate(
        filename=name,
        location=base + urllib.parse.quote(name),
        sha256=sha,
        size=size,
        archs=tuple(archs),
        ptx=ptx,
        source=source,
        problem="; ".join(problems) or None,
    )
