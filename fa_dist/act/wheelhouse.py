"""The local wheelhouse: wheels plus manifest.json, one entry per wheel with its sha256 and variant."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from fa_dist.containment import publish, safe_filename
from fa_dist.errors import ConfigError
from fa_dist.model import codec
from fa_dist.model.wheel import WheelEntry

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read(folder: Path) -> list[WheelEntry]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{path} is not JSON: {exc}", fix=f"delete it and rebuild: rm {path}"
        ) from None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise ConfigError(
            f"{path}: manifest version {data.get('version') if isinstance(data, dict) else '?'} "
            f"is not {MANIFEST_VERSION}"
        )
    wheels = data.get("wheels")
    if not isinstance(wheels, list):
        raise ConfigError(f"{path}: expected a list under 'wheels'")
    entries = [codec.decode(WheelEntry, w, f"{path}:wheels[{i}]") for i, w in enumerate(wheels)]
    for entry in entries:  # a name from the manifest becomes a path next to it: keep it there
        safe_filename(entry.filename, what=f"{path}: wheel file name")
    return entries


def add(folder: Path, entry: WheelEntry) -> None:
    """Record ``entry`` (replacing one with the same filename); the manifest is replaced atomically."""
    entries = [e for e in read(folder) if e.filename != entry.filename] + [entry]
    entries.sort(key=lambda e: e.filename)
    payload: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "wheels": [codec.encode(e) for e in entries],
    }
    _atomic_write(folder / MANIFEST, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def verified(folder: Path, entry: WheelEntry) -> bool:
    """Whether the wheel file is present and still has the recorded hash."""
    path = folder / entry.filename
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def _atomic_write(path: Path, text: str) -> None:
    publish(path, text.encode())


def with_hash(entry: WheelEntry, path: Path) -> WheelEntry:
    return replace(entry, sha256=sha256_of(path), size=path.stat().st_size)
