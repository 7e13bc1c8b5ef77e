"""`fa-dist index`: a static index from a real wheelhouse, checked, rebuilt idempotently, and used by
plain pip over HTTP on 127.0.0.1 (no fa-dist in the loop)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fa_dist.act import index, wheelhouse
from fa_dist.model.wheel import WheelEntry

pytestmark = pytest.mark.integration
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def _wheel_with_version(out: Path, version: str, tmp: Path) -> Path:
    """A real wheel of the kernel package carrying a variant version (built by setup.py's config path,
    without compiling: the index cares about names and hashes)."""
    config = tmp / f"config-{version}.json"
    config.write_text(json.dumps({"version": version, "sources": [], "build_info": {"variant": version}}))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                           str(KERNELS)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FA_KERNELS_BUILD_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = [w for w in out.glob("*.whl") if version.lower() in w.name]
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    tmp = tmp_path_factory.mktemp("work")
    for version, variant in (("0.1.0", None), ("0.1.0+cu130torch2.11cxx11abiTRUE", "cu130torch2.11cxx11abiTRUE"),
                             ("0.1.0+cu128torch2.10cxx11abiTRUE", "cu128torch2.10cxx11abiTRUE"),
                             ("0.1.0+cu130torch2.10stableabi", "cu130torch2.10stableabi")):
        wheel = _wheel_with_version(folder, version, tmp)
        entry = WheelEntry(filename=wheel.name, sha256="", size=0, name="fa-kernels", version=version,
                                      variant=variant, archs=("sm_90a",) if variant else (), python="py3",
                                      platform="any", recipe="cuda" if variant else "triton",
                                      source_digest="test", built_at="2026-11-22T00:00:00+00:00")
        wheelhouse.add(folder, wheelhouse.with_hash(entry, wheel))
    return folder


def _digest(site: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(site.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(site)).encode() + p.read_bytes())
    return h.hexdigest()


def test_build_check_and_idempotent(wheels: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    groups = index.build(wheels, site)
    assert set(groups) == {"simple", "cu130-torch2.11", "cu128-torch2.10", "cu130-torch2.10-stableabi"}
    assert len(groups["simple"]) == 4 and len(groups["cu130-torch2.11"]) == 2  # its wheel + the pure one
    assert groups["cu130-torch2.10-stableabi"] == sorted([  # the stable-ABI wheel has its own index
        "fa_kernels-0.1.0+cu130torch2.10stableabi-py3-none-any.whl", "fa_kernels-0.1.0-py3-none-any.whl"])
    assert index.check(site) == []
    first = _digest(site)
    index.build(wheels, site)
    assert _digest(site) == first
    page = (site / "cu130-torch2.11" / "fa-kernels" / "index.html").read_text()
    assert "#sha256=" in page and "cu128" not in page
    victim = next(site.glob("*cu130*.whl"))
    victim.write_bytes(victim.read_bytes() + b"x")
    problems = index.check(site)
    assert any("sha256" in p.what for p in problems)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(wheels: Path, tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    index.build(wheels, site)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(("sub", "expected"), [
    ("cu130-torch2.11", "0.1.0+cu130torch2.11cxx11abitrue"),
    ("cu128-torch2.10", "0.1.0+cu128torch2.10cxx11abitrue"),
    ("cu130-torch2.10-stableabi", "0.1.0+cu130torch2.10stableabi"),
])
def test_plain_pip_picks_the_variant_of_its_sub_index(served: str, tmp_path: Path, sub: str, expected: str) -> None:
    target = tmp_path / "t"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--no-deps", "--no-cache-dir",
                           "--target", str(target), "--index-url", f"{served}/{sub}/", "fa-kernels"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (target / f"fa_kernels-{expected}.dist-info").is_dir()
