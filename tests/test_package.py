"""fa-dist as users get it: `python -m build` makes the sdist and, from it, the wheel; both pass
`twine check` and the wheel bundles the kernels. Installed with its dependencies into a fresh venv
outside the checkout (as pipx would), every command works from another folder: install builds the
pure-Triton wheel from the bundle into the user data dir and smoke-tests it in a second venv."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from fa_dist.decide import build_plan

from .envs import shared_venv

pytest.importorskip("torch")
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FA_DIST_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "120", **kw.pop("env", {})})  # type: ignore[dict-item]
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=600, **kw
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # without isolation: the build backend of this environment, no download
    done = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return out


def test_sdist_and_wheel_are_complete_and_pass_twine_check(dist: Path) -> None:
    (sdist,) = dist.glob("fa_dist-*.tar.gz")
    (wheel,) = dist.glob("fa_dist-*.whl")
    checked = run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        bundle = json.loads(zf.read("fa_dist/_bundle/bundle.json"))
        archive = zf.read(f"fa_dist/_bundle/{bundle['sdist']}")
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    # `python -m build` made this wheel from the sdist: the bundle proves the sdist carries its inputs
    assert (
        hashlib.sha256(archive).hexdigest() == bundle["sha256"] and len(archive) == bundle["size"]
    )
    assert {f"fa_dist/_bundle/recipes/{n}.toml" for n in ("cuda", "rocm", "triton")} <= names
    assert "fa_dist/py.typed" in names
    assert not any(n.startswith(("kernels/", "recipes/", "tests/")) for n in names)
    for line in (
        "Requires-Python: >=3.10",
        "Description-Content-Type: text/markdown",
        "Requires-Dist: platformdirs",
        "Classifier: Typing :: Typed",
        "Project-URL: Source, ",
    ):
        assert line in metadata, line
    assert "fa-dist = fa_dist.cli:main" in scripts


@pytest.fixture(scope="module")
def tool(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fa-dist from its wheel, with its dependencies, in a venv of its own (as pipx installs tools)."""
    venv = tmp_path_factory.mktemp("tool") / "venv"
    assert run([sys.executable, "-m", "venv", venv]).returncode == 0
    (wheel,) = dist.glob("fa_dist-*.whl")
    done = run([venv / "bin/python", "-m", "pip", "install", "-q", wheel])
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "fa-dist"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees this environment's torch and triton (no second 1 GB install), and neither
    fa-dist nor fa-kernels."""
    return shared_venv(tmp_path_factory.mktemp("target"))


def test_the_installed_tool_works_from_another_folder(
    tool: Path, target: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    wheels = tmp_path / "data" / "fa-dist" / "wheels"

    def fa_dist(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([tool, *args], cwd=elsewhere, env=home)

    doctor = fa_dist("doctor", "--python", target, "--json")
    report = json.loads(doctor.stdout)
    assert report["kernel_source"]["kind"] == "bundle", report["kernel_source"]
    assert report["kernel_source"]["path"].startswith(str(tool.parent.parent))
    assert report["wheelhouse"] == str(wheels)

    installed = fa_dist("install", "--python", target, "--json")
    assert installed.returncode == 0, installed.stderr[-3000:]
    outcome = json.loads(installed.stdout)
    assert outcome["smoke_passed"] is True and (wheels / outcome["installed"]).is_file()
    where = run([target, "-c", "import fa_kernels; print(fa_kernels.__file__)"], cwd=elsewhere)
    assert where.stdout.startswith(str(target.parent.parent)), where.stdout + where.stderr

    rebuilt = fa_dist("build", "--python", target, "--json")
    assert rebuilt.returncode == 0 and json.loads(rebuilt.stdout)["reused"] == "wheel", (
        rebuilt.stderr
    )

    cells = fa_dist("matrix", "--file", ROOT / "matrix.yaml", "--format", "github")
    from_checkout = run([sys.executable, "-m", "fa_dist", "matrix", "--format", "github"], cwd=ROOT)
    assert cells.returncode == 0 and from_checkout.returncode == 0, cells.stderr
    assert json.loads(cells.stdout)["include"], cells.stdout
    assert json.loads(cells.stdout) == json.loads(from_checkout.stdout)  # same cells, any folder
    no_file = fa_dist("matrix")
    assert no_file.returncode == 2 and "fix: " in no_file.stderr

    site_dir = tmp_path / "site"
    indexed = fa_dist("index", "build", "--out", site_dir)
    assert indexed.returncode == 0, indexed.stderr
    assert fa_dist("index", "check", site_dir).returncode == 0
    assert (site_dir / outcome["installed"]).is_file()


def test_the_bundled_kernel_sources_digest_like_the_checkout(dist: Path, tmp_path: Path) -> None:
    """A wheel `fa-dist build` made from a checkout must not read as stale to a pip-installed fa-dist
    (and back): the bundle's unpacked sdist and kernels/ give one source digest (the sdist adds only
    its metadata files)."""
    (wheel,) = dist.glob("fa_dist-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        bundle = json.loads(zf.read("fa_dist/_bundle/bundle.json"))
        (tmp_path / "sdist.tar.gz").write_bytes(zf.read(f"fa_dist/_bundle/{bundle['sdist']}"))
    with tarfile.open(tmp_path / "sdist.tar.gz") as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    (top,) = (tmp_path / "unpacked").iterdir()
    kernels = Path(__file__).resolve().parent.parent / "kernels"
    assert (top / "PKG-INFO").is_file()  # the sdist's own file, which the digest leaves out
    assert build_plan.source_digest(top) == build_plan.source_digest(kernels)
