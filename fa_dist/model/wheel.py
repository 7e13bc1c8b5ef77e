"""A built wheel as the wheelhouse manifest records it: file, hash, variant, archs, and what built it."""

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
