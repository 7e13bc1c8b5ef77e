"""Real installs into a throwaway venv that sees this environment's torch but not its fa-kernels:
install, reinstall, HTTP index on 127.0.0.1, bad hashes, and rollback after a failed smoke test, with
proof that torch was not touched."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import wheelcraft
from .envs import shared_venv

pytest.importorskip("torch")
pytestmark = pytest.mark.integration
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", **kw.pop("env", {})}  # type: ignore[dict-item]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose site-packages links every package of this one except fa-kernels and fa-dist."""
    return shared_venv(tmp_path_factory.mktemp("target"))


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


# -- issue #12: the install transaction under hostile wheels, with real pip --------------------------------


def state(python: Path) -> tuple[str | None, str | None]:
    """(installed fa-kernels version, the wheel the record names)."""
    record = python.parent.parent / "fa-dist-install.json"
    wheel = json.loads(record.read_text())["wheel"] if record.exists() else None
    return installed_version(python), wheel


def crafted(tmp_path: Path, version: str, smoke: str, **kw: object) -> Path:
    folder = tmp_path / f"wh-{version}"
    wheelcraft.craft(folder, version, smoke, **kw)  # type: ignore[arg-type]
    return folder


def test_smoke_imports_the_installed_files_not_the_working_directory(target: Path, tmp_path: Path) -> None:  # item 1
    before = state(target)
    shadow = tmp_path / "checkout"
    (shadow / "fa_kernels").mkdir(parents=True)
    (shadow / "fa_kernels" / "__init__.py").write_text("__version__ = 'shadow'\n")
    (shadow / "fa_kernels" / "smoke.py").write_text(wheelcraft.printing_smoke(wheelcraft.result("shadow") + "\n"))
    bad = crafted(tmp_path, "0.2.0", wheelcraft.printing_smoke(wheelcraft.result("0.2.0", passed=False) + "\n", 1))
    done = run([sys.executable, "-m", "fa_dist", "install", "--python", str(target), "--no-build",
                "--wheelhouse", str(bad)], cwd=shadow)
    assert done.returncode == 8, done.stderr[-2000:]
    assert "the smoke test failed" in done.stderr and state(target) == before


def test_garbage_smoke_output_fails_and_rolls_back(target: Path, tmp_path: Path) -> None:  # item 3
    before = state(target)  # (test_hostile.py covers the other shapes of garbage without pip)
    done = fa_install(target, "--wheelhouse", str(crafted(tmp_path, "0.2.1", wheelcraft.printing_smoke("{not json\n"))))
    assert done.returncode == 8, done.stderr[-2000:]
    assert "did not run to the end" in done.stderr and "Traceback" not in done.stderr
    assert state(target) == before


def test_console_script_is_backed_up_inside_and_restored(target: Path, tmp_path: Path) -> None:  # item 2
    system_script = Path("/usr/bin/fa-kernels-smoke")
    assert not system_script.exists()
    good = crafted(tmp_path, "0.1.6", wheelcraft.passing_smoke("0.1.6"), script=True)
    assert fa_install(target, "--wheelhouse", str(good)).returncode == 0
    script = target.parent / "fa-kernels-smoke"
    assert "0.1.6" in script.read_text()
    bad = crafted(tmp_path, "0.2.2", wheelcraft.printing_smoke(wheelcraft.result("0.2.2", passed=False) + "\n", 1))
    done = fa_install(target, "--wheelhouse", str(bad))
    assert done.returncode == 8 and "restored fa-kernels 0.1.6" in done.stderr, done.stderr[-2000:]
    assert "0.1.6" in script.read_text() and not system_script.exists()
    assert state(target) == ("0.1.6", "fa_kernels-0.1.6-py3-none-any.whl")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_the_smoke_test_restores(target: Path, tmp_path: Path, sig: signal.Signals) -> None:  # item 4
    before = state(target)
    slow = crafted(tmp_path, "0.2.3", wheelcraft.passing_smoke("0.2.3", sleep=60))
    proc = subprocess.Popen([sys.executable, "-m", "fa_dist", "install", "--python", str(target), "--no-build",
                             "--wheelhouse", str(slow)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**os.environ, "NO_COLOR": "1"})
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:  # the smoke test's progress streams while it runs
        seen.append(line)
        if "smoke: pass" in line:
            break
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert "interrupted" in rest and state(target) == before


def test_the_smoke_timeout_is_settable(target: Path, tmp_path: Path) -> None:  # item 11
    before = state(target)
    slow = crafted(tmp_path, "0.2.4", wheelcraft.passing_smoke("0.2.4", sleep=60))
    done = fa_install(target, "--wheelhouse", str(slow), "--smoke-timeout", "2")
    assert done.returncode == 8 and "timed out after 2s" in done.stderr, done.stderr[-2000:]
    assert state(target) == before


def test_two_installs_at_once_are_serialised(target: Path, tmp_path: Path) -> None:  # item 5
    folders = [crafted(tmp_path, v, wheelcraft.passing_smoke(v, sleep=1.5, own_version_check=True))
               for v in ("0.3.0", "0.4.0")]
    procs = [subprocess.Popen([sys.executable, "-m", "fa_dist", "install", "--python", str(target), "--no-build",
                               "--wheelhouse", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NO_COLOR": "1"}) for f in folders]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-1500:] for r in results]
    assert any("waiting for another fa-dist install" in r[1] for r in results)
    version, wheel = state(target)
    assert wheel == f"fa_kernels-{version}-py3-none-any.whl"


def test_not_a_python_or_too_old_is_a_clear_error(tmp_path: Path) -> None:  # item 11
    shell = run([sys.executable, "-m", "fa_dist", "doctor", "--python", "/bin/sh"])
    assert shell.returncode == 4 and "is not a Python interpreter" in shell.stderr
    old = tmp_path / "python2.7"
    old.write_text("#!/bin/sh\necho 'FA_DIST_PYTHON 2 7'\n")  # answers the version question as 2.7 would
    old.chmod(0o755)
    done = run([sys.executable, "-m", "fa_dist", "install", "--python", str(old)])
    assert done.returncode == 4 and "too old (fa-kernels needs >= 3.10)" in done.stderr


def test_a_wheel_built_from_other_kernel_sources_is_stale(target: Path, wheels: Path, tmp_path: Path) -> None:
    """After an fa-dist upgrade whose kernel version stayed the same, the wheelhouse still holds the
    old build under the same file name: the manifest's source digest tells it apart, and it is not
    installed (here --no-build, so nothing else matches); the wheel of these sources is."""
    fresh = fa_install(target, "--wheelhouse", str(wheels), "--dry-run")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert re.fullmatch(r"fa_kernels-[^-]+-py3-none-any\.whl", json.loads(fresh.stdout)["plan"])
    old = tmp_path / "old-wheelhouse"
    shutil.copytree(wheels, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["wheels"]:
        entry["source_digest"] = "0123456789abcdef"
    (old / "manifest.json").write_text(json.dumps(manifest))
    stale = fa_install(target, "--wheelhouse", str(old), "--dry-run")
    assert stale.returncode == 7, stale.stdout[-2000:]  # no wheel matches (and --no-build: none is made)
    assert "stale" in stale.stdout + stale.stderr
    assert "0123456789abcdef" in stale.stdout + stale.stderr
