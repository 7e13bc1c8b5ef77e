"""Real installs into a throwaway venv that sees this environment's torch but not its fa-kernels:
install, reinstall, HTTP index on 127.0.0.1, bad hashes, and rollback after a failed smoke test, with
proof that torch was not touched."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import site
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.integration
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", **kw.pop("env", {})}  # type: ignore[dict-item]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose site-packages links every package of this one except fa-kernels and fa-dist."""
    root = tmp_path_factory.mktemp("target")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    shadow = root / "shared-site"
    shadow.mkdir()
    # every site folder this interpreter sees, those reached through a .pth (a shared base venv) too
    folders = dict.fromkeys([*site.getsitepackages(), *(p for p in sys.path if p.endswith("site-packages"))])
    for sp in folders:
        for entry in Path(sp).iterdir():
            low = entry.name.lower()
            if low.startswith(("fa_kernels", "fa_dist", "__editable__", "fa-kernels", "fa-dist", "pip")) \
                    or entry.suffix == ".pth" or (shadow / entry.name).exists():
                continue
            (shadow / entry.name).symlink_to(entry)
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    (site_dir / "zz_shared.pth").write_text(str(shadow) + "\n")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheelhouse with the real pure-Triton wheel, built by fa-dist."""
    folder = tmp_path_factory.mktemp("wheels")
    done = run([sys.executable, "-m", "fa_dist", "build", "--recipe", "triton", "--wheelhouse", str(folder)],
               env={"FA_DIST_CACHE_DIR": str(folder.parent / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def torch_fingerprint(python: Path) -> str:
    code = "import torch, os; print(torch.__version__, torch.__file__, os.stat(torch.__file__).st_mtime_ns)"
    return run([str(python), "-c", code]).stdout.strip()


def installed_version(python: Path) -> str | None:
    done = run([str(python), "-c", "import importlib.metadata as m; print(m.version('fa-kernels'))"])
    return done.stdout.strip() if done.returncode == 0 else None


def fa_install(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "fa_dist", "install", "--python", str(python), "--no-build", "--json", *args])


def test_install_reinstall_and_torch_untouched(target: Path, wheels: Path) -> None:
    before = torch_fingerprint(target)
    first = fa_install(target, "--wheelhouse", str(wheels))
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)
    assert result["installed"] == "fa_kernels-0.1.0-py3-none-any.whl" and result["smoke_passed"] is True
    assert installed_version(target) == "0.1.0"
    record = json.loads(Path(result["record"]).read_text())
    assert record["sha256"] == result["sha256"] and record["smoke"]["passed"] is True
    again = fa_install(target, "--wheelhouse", str(wheels))
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch_fingerprint(target) == before


def test_failed_smoke_rolls_back_to_the_previous_install(target: Path, wheels: Path, tmp_path: Path) -> None:
    assert fa_install(target, "--wheelhouse", str(wheels)).returncode == 0
    broken_src = tmp_path / "kernels"
    shutil.copytree(KERNELS, broken_src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    init = broken_src / "fa_kernels" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.1"'))
    (broken_src / "fa_kernels" / "smoke.py").write_text(
        "import json, sys\nprint(json.dumps({'passed': False, 'device': 'cpu', 'fa_kernels': '0.1.1', "
        "'torch': '', 'backends': [], 'cases': [{'op': 'attention fwd+bwd', 'backend': 'triton', "
        "'shape': 'b1', 'dtype': 'fp16', 'max_err': 1.0, 'tolerance': 0.001, 'speed': '-', "
        "'passed': False, 'error': 'planted failure'}]}))\nsys.exit(1)\n")
    bad = tmp_path / "bad"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(bad), str(broken_src)])
    assert built.returncode == 0, built.stderr[-2000:]
    failed = fa_install(target, "--wheelhouse", str(wheels), "--find-links", str(bad))
    assert failed.returncode == 8
    assert "planted failure" in failed.stderr and "restored fa-kernels 0.1.0" in failed.stderr
    assert installed_version(target) == "0.1.0"
    assert run([str(target), "-c", "import fa_kernels"]).returncode == 0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(wheels: Path) -> Iterator[tuple[str, Path]]:
    root = wheels.parent / "site"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(wheels, root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()


def test_install_from_an_http_index_on_localhost(target: Path, server: tuple[str, Path], tmp_path: Path) -> None:
    url, _root = server
    done = run([sys.executable, "-m", "fa_dist", "install", "--python", str(target), "--no-build", "--json",
                "--wheelhouse", str(tmp_path / "empty"), "--index-url", url],
               env={"FA_DIST_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["source"] == url
    assert (tmp_path / "cache" / "wheels" / "fa_kernels-0.1.0-py3-none-any.whl").is_file()


def test_wrong_sha256_in_the_index_is_refused(target: Path, server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["wheels"][0]["sha256"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    done = run([sys.executable, "-m", "fa_dist", "install", "--python", str(target), "--no-build",
                "--wheelhouse", str(tmp_path / "empty"), "--index-url", url],
               env={"FA_DIST_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 8 and "does not match the index's" in done.stderr


def test_missing_index_and_insecure_http_are_clear_errors(target: Path, tmp_path: Path) -> None:
    gone = fa_install(target, "--wheelhouse", str(tmp_path), "--index-url", "http://127.0.0.1:9/")
    assert gone.returncode == 2 and "cannot read the index manifest" in gone.stderr
    insecure = fa_install(target, "--wheelhouse", str(tmp_path), "--index-url", "http://example.com/idx/")
    assert insecure.returncode == 2 and "plain http to a non-local host" in insecure.stderr


def test_no_matching_wheel_prints_the_trace(target: Path, tmp_path: Path) -> None:
    (tmp_path / "fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp311-cp311-linux_x86_64.whl").write_bytes(b"x")
    done = fa_install(target, "--wheelhouse", str(tmp_path))
    assert done.returncode == 7
    assert "reject fa_kernels-0.1.0+cu130torch2.11cxx11abitrue" in done.stderr


def test_install_without_torch_stops_at_once_with_the_fix(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = fa_install(bare / "bin" / "python", "--wheelhouse", str(tmp_path / "wh"))
    assert done.returncode == 3
    assert "torch is not installed" in done.stderr and "pip install torch --index-url" in done.stderr
    assert not (tmp_path / "wh").exists()  # nothing was built
