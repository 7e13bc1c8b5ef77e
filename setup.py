"""fa-dist's build: setuptools with the metadata in pyproject.toml, plus one step. Building the wheel
bundles the kernels fa-dist installs, so an installed fa-dist (pip, pipx, uv tool) builds them with no
checkout around:

    fa_dist/_bundle/fa_kernels-X.tar.gz   the fa-kernels sdist, built here from kernels/
    fa_dist/_bundle/recipes/*.toml        the build recipes
    fa_dist/_bundle/bundle.json           {"format": 1, "sdist", "version", "sha256", "size"}

fa_dist/sources.py reads them at run time. fa-dist's own sdist carries kernels/ and recipes/
(MANIFEST.in), so a wheel built from it bundles the same. Editable installs skip the step: they run
from the checkout, which fa-dist finds by itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLE_FORMAT = 1  # fa_dist/sources.py reads this format
# what a local build leaves in kernels/ and no sdist should carry
LITTER = ("build", "dist", "__pycache__", "*.egg-info", "*.so", "*.pyc")


def kernel_version(kernels: Path) -> str:
    text = (kernels / "fa_kernels" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{kernels}/fa_kernels/__init__.py has no __version__")
    return match[1]


def build_kernel_sdist(kernels: Path, out: Path) -> Path:
    """kernels/ -> fa_kernels-X.tar.gz by its own build backend, in a subprocess and from a copy (the
    backend writes egg-info into the tree it builds; the checkout stays clean)."""
    with tempfile.TemporaryDirectory(prefix="fa-dist-bundle-") as tmp:
        copy = Path(tmp) / "kernels"
        shutil.copytree(kernels, copy, ignore=shutil.ignore_patterns(*LITTER))
        code = "import sys, setuptools.build_meta as m; print(m.build_sdist(sys.argv[1]))"
        done = subprocess.run(
            [sys.executable, "-c", code, str(out.resolve())],
            cwd=copy,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"building the fa-kernels sdist failed (exit {done.returncode}):\n"
            + (done.stdout + done.stderr)[-4000:]
        )
    return out / done.stdout.strip().splitlines()[-1]


def write_bundle(root: Path, dest: Path) -> None:
    kernels, recipes = root / "kernels", root / "recipes"
    if not (kernels / "setup.py").is_file() or not sorted(recipes.glob("*.toml")):
        raise RuntimeError(
            f"fa-dist's wheel bundles kernels/ and recipes/, and {root} lacks them: build it from a "
            "checkout or from fa-dist's sdist"
        )
    if dest.exists():  # a build folder reused from an earlier build may hold an older bundle
        shutil.rmtree(dest)
    (dest / "recipes").mkdir(parents=True)
    sdist = build_kernel_sdist(kernels, dest)
    for recipe in sorted(recipes.glob("*.toml")):
        shutil.copyfile(recipe, dest / "recipes" / recipe.name)
    data = sdist.read_bytes()
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": "fa-kernels",
        "version": kernel_version(kernels),
        "sdist": sdist.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    (dest / "bundle.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


class BuildPyWithKernelBundle(build_py):
    """build_py, then the kernel bundle next to the package's modules (so it lands in the wheel)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        write_bundle(ROOT, Path(self.build_lib).resolve() / "fa_dist" / "_bundle")


# build backends run this file as __main__; tests import it for write_bundle
if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithKernelBundle})
