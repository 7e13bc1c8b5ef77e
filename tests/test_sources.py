"""Locations (fa_dist/paths.py) and kernel sources (fa_dist/sources.py): a checkout is found only where
it really is, an installed fa-dist builds from the bundle its wheel carries (made here by setup.py's own
write_bundle), verified and unpacked once, and a damaged or missing bundle is one clear error."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from fa_dist import paths, sources
from fa_dist.decide import recipes
from fa_dist.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fa_dist_setup", ROOT / "setup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines the build step, runs no setup()
    return module


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed fa_dist package's folder as the wheel lays it out: _bundle/ and nothing around it."""
    package = tmp_path_factory.mktemp("site-packages") / "fa_dist"
    load_setup().write_bundle(ROOT, package / "_bundle")
    return package


@pytest.fixture
def installed(bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run as an installed fa-dist (from `bundled`), with a private cache and data dir."""
    monkeypatch.setattr(paths, "PACKAGE", bundled)
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("FA_DIST_WHEELHOUSE", raising=False)
    return bundled


def test_the_repository_is_a_checkout_and_builds_from_its_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FA_DIST_WHEELHOUSE", raising=False)
    assert paths.checkout() == ROOT
    assert sources.kernels_dir() == ROOT / "kernels"
    assert paths.recipes_dir() == ROOT / "recipes"
    assert paths.default_wheelhouse() == ROOT / "wheels"
    assert sources.describe()["kind"] == "checkout"


def test_a_foreign_kernels_folder_next_to_the_package_is_not_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. site-packages holding another distribution's top-level `kernels` package
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    (tmp_path / "kernels" / "setup.py").write_text("")
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "fa_dist")
    assert paths.checkout() is None


def test_an_installed_fa_dist_builds_from_its_verified_bundle(installed: Path) -> None:
    source = sources.locate()
    assert source.kind is sources.Kind.BUNDLE and source.version == "0.1.0"
    kernels = sources.kernels_dir()
    assert kernels.parent == paths.cache_dir() / "sources"
    # the same sources as the checkout, and the bundled recipes name files that exist there
    for name in ("setup.py", "csrc/ops.cpp", "fa_kernels/smoke.py"):
        assert (kernels / name).read_bytes() == (ROOT / "kernels" / name).read_bytes(), name
    assert paths.recipes_dir() == installed / "_bundle" / "recipes"
    assert set(recipes.load_all(source_root=kernels)) == {"cuda", "rocm", "triton"}
    assert paths.default_wheelhouse() == paths.data_dir() / "wheels"
    assert "site-packages" not in str(paths.default_wheelhouse())
    described = sources.describe()
    assert described["kind"] == "bundle" and described["sha256"] == source.sha256
    assert described["problem"] is None


def test_the_bundle_is_unpacked_once(installed: Path) -> None:
    first = sources.kernels_dir()
    marker = first / "setup.py"
    stamp = marker.stat().st_mtime_ns
    assert sources.kernels_dir() == first and marker.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp folders left


def test_a_damaged_bundle_is_refused_before_anything_is_unpacked(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "other-site" / "fa_dist"
    shutil.copytree(installed, copy)
    archive = sources.locate().path.name
    data = bytearray((copy / "_bundle" / archive).read_bytes())
    data[-100] ^= 0xFF
    (copy / "_bundle" / archive).write_bytes(bytes(data))
    monkeypatch.setattr(paths, "PACKAGE", copy)
    with pytest.raises(ConfigError) as err:
        sources.kernels_dir()
    assert "damaged" in err.value.message and "reinstall" in (err.value.fix or "")
    assert not (paths.cache_dir() / "sources").exists()
    assert "damaged" in sources.describe()["problem"]


def test_no_checkout_and_no_bundle_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "fa_dist")
    with pytest.raises(ConfigError) as err:
        sources.kernels_dir()
    assert "no kernel sources" in err.value.message and "reinstall" in (err.value.fix or "")
    with pytest.raises(ConfigError) as err:
        recipes.load_all()
    assert "reinstall" in (err.value.fix or "")
    described = sources.describe()
    assert described["kind"] is None and "no kernel sources" in described["problem"]


def test_an_archive_escaping_its_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "fa_dist" / "_bundle"
    bundle.mkdir(parents=True)
    archive = bundle / "fa_kernels-0.1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("fa_kernels-0.1.0/setup.py", "fa_kernels-0.1.0/../../escaped.py"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = {"format": 1, "sdist": archive.name, "version": "0.1.0", "sha256": sha}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "fa_dist")
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="refusing archive member"):
        sources.kernels_dir()
    assert not (tmp_path / "cache" / "escaped.py").exists()


def test_locations_follow_their_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("FA_DIST_WHEELHOUSE", str(tmp_path / "w"))
    assert paths.cache_dir() == tmp_path / "c" and paths.build_dir() == tmp_path / "c" / "build"
    assert paths.default_wheelhouse() == tmp_path / "w"
    monkeypatch.delenv("FA_DIST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "fa-dist"
