"""Where fa-dist keeps things: the user cache (downloads, build trees) and the local wheelhouse."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FA_DIST_CACHE_DIR``, else ``$XDG_CACHE_HOME/fa-dist``, else ``~/.cache/fa-dist``."""
    if explicit := os.environ.get("FA_DIST_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fa-dist"


def build_dir() -> Path:
    return cache_dir() / "build"
