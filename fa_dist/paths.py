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


def checkout() -> Path:
    """The fa-dist source checkout this package runs from (kernels/, recipes/, wheels/ live there)."""
    return Path(__file__).resolve().parent.parent


def kernels_dir() -> Path:
    return checkout() / "kernels"


def default_wheelhouse() -> Path:
    return Path(os.environ.get("FA_DIST_WHEELHOUSE") or checkout() / "wheels")
