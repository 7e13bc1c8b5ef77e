"""Wheels as values: a built wheel as the wheelhouse manifest records it (file, hash, variant, archs,
what built it), and a candidate the resolver weighs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class WheelEntry:
    filename: str
    sha256: str
    size: int
    name: str
    version: str
    variant: str | None  # None: the pure-Triton wheel
    archs: tuple[str, ...]
    python: str
    platform: str
    recipe: str
    source_digest: str
    built_at: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A wheel the resolver may choose: from a local folder (with its manifest entry) or an index."""

    filename: str
    location: str  # a path or URL
    sha256: str | None
    archs: tuple[str, ...] = ()  # from the manifest; () = unknown
    ptx: str | None = None
    source: str = ""
    size: int | None = None  # bytes, from the manifest; None = unknown
    problem: str | None = None  # why the source's entry cannot be used (no valid sha256, ...)
