"""Where fa-dist keeps and finds things: the user cache (downloads, build trees, unpacked kernel
sources), the user data dir (the default wheelhouse), the source checkout fa-dist runs from (if it
does) and the kernel bundle its wheel carries. Locations only: nothing here reads or writes files.

Each location has an environment override, for CI and for disks with more room:

    FA_DIST_CACHE_DIR   the cache       (default: platformdirs' user cache dir, ~/.cache/fa-dist)
    FA_DIST_WHEELHOUSE  the wheelhouse  (default: wheels/ in a checkout, else the user data dir's
                                         wheels/, ~/.local/share/fa-dist/wheels)
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "fa-dist"
PACKAGE = Path(__file__).resolve().parent
# what makes the folder above the package a checkout of fa-dist and not, say, a site-packages that
# happens to hold some other distribution's top-level `kernels` package
CHECKOUT_MARKS = (
    "pyproject.toml",
    "kernels/setup.py",
    "kernels/pyproject.toml",
    "kernels/fa_kernels/__init__.py",
    "recipes/triton.toml",
)


def cache_dir() -> Path:
    """``$FA_DIST_CACHE_DIR``, else the user cache dir (``$XDG_CACHE_HOME/fa-dist`` on Linux)."""
    if explicit := os.environ.get("FA_DIST_CACHE_DIR"):
        return Path(explicit)
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def data_dir() -> Path:
    """The user data dir (``$XDG_DATA_HOME/fa-dist`` on Linux): what outlives a cache clean-up."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def build_dir() -> Path:
    return cache_dir() / "build"


def checkout() -> Path | None:
    """The fa-dist source checkout this package runs from, or None for an installed fa-dist."""
    root = PACKAGE.parent
    return root if all((root / mark).is_file() for mark in CHECKOUT_MARKS) else None


def bundle_dir() -> Path:
    """Where an installed fa-dist keeps its bundled kernel sdist, its bundle.json and the recipes."""
    return PACKAGE / "_bundle"


def recipes_dir() -> Path:
    """The recipes `fa-dist build` uses: the checkout's, else the bundled copy."""
    root = checkout()
    return root / "recipes" if root else bundle_dir() / "recipes"


def default_wheelhouse() -> Path:
    """``$FA_DIST_WHEELHOUSE``, else ``wheels/`` in a checkout, else the user data dir's ``wheels/``:
    never inside site-packages, which a reinstall of fa-dist would wipe."""
    if explicit := os.environ.get("FA_DIST_WHEELHOUSE"):
        return Path(explicit)
    root = checkout()
    return root / "wheels" if root else data_dir() / "wheels"
