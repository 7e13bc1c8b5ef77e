"""Doctor and the attention packages beside ours, from REAL xformers wheels installed --no-deps into a
throwaway venv that sees this environment's CPU torch (issue #18 acceptance): 0.0.34 pins
torch==2.10.0 and must be named with a fix that keeps torch; 0.0.35 serves torch>=2.10 and matches."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.integration


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="session")
def xformers_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both releases downloaded once per session (pip's cache makes a rerun cheap)."""
    folder = tmp_path_factory.mktemp("xformers-wheels")
    for version in ("0.0.34", "0.0.35"):
        done = _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                     f"xformers=={version}", "-d", str(folder)])
        if done.returncode:
            pytest.skip(f"xformers {version} not downloadable here: {done.stderr[-300:]}")
    return folder


def _venv_with(root: Path, wheel: Path) -> Path:
    """A venv that sees this interpreter's site folders (torch) through a .pth, plus one wheel."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    folders = dict.fromkeys([*site.getsitepackages(), *(p for p in sys.path if p.endswith("site-packages"))])
    (site_dir / "zz_shared.pth").write_text("\n".join(folders) + "\n")
    python = venv / "bin" / "python"
    done = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    assert done.returncode == 0, done.stderr
    return python


def _doctor(python: Path) -> dict[str, Any]:
    done = _run([sys.executable, "-m", "fa_dist", "doctor", "--python", str(python), "--json"])
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _finding(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    (found,) = [f for f in report["findings"] if f["id"] == check_id]
    return found


def test_xformers_034_names_its_torch_and_a_fix_that_keeps_torch(
    xformers_wheels: Path, tmp_path: Path
) -> None:
    python = _venv_with(tmp_path, next(xformers_wheels.glob("xformers-0.0.34-*.whl")))
    report = _doctor(python)
    (neighbour,) = report["environment"]["neighbours"]
    assert neighbour["requires_torch"] == "torch==2.10.0"
    assert neighbour["build_info"]["torch"].startswith("2.10.0")
    finding = _finding(report, "neighbour-xformers")
    assert finding["severity"] == "error"
    assert "torch==2.10.0" in finding["title"] and torch.__version__ in finding["title"]
    assert "undefined symbol" in finding["why"] and "replace torch" in finding["why"]
    assert "install --no-deps 'xformers>=0.0.35'" in finding["fix"]
    # the fix works as written and leaves torch alone
    fix = finding["fix"].split("   #")[0].replace("install", "install --no-index --find-links " + str(xformers_wheels), 1)
    assert _run(["bash", "-c", fix]).returncode == 0
    after = _finding(_doctor(python), "neighbour-xformers")
    assert after["severity"] == "ok", after
    assert _run([str(python), "-c", "import torch; print(torch.__version__)"]).stdout.strip() == torch.__version__


def test_xformers_035_reports_a_match(xformers_wheels: Path, tmp_path: Path) -> None:
    python = _venv_with(tmp_path, next(xformers_wheels.glob("xformers-0.0.35-*.whl")))
    report = _doctor(python)
    finding = _finding(report, "neighbour-xformers")
    assert finding["severity"] == "ok"
    assert finding["title"] == f"xformers 0.0.35 serves torch {torch.__version__}"
    assert "torch>=2.10" in finding["evidence"]


def test_flash_attn_4_is_seen_from_metadata_and_its_import_failure_reported(tmp_path: Path) -> None:
    """The real flash-attn-4 wheel (pure Python, CuTe DSL) --no-deps: its nvidia-cutlass-dsl is absent,
    so flash_attn.cute cannot import; doctor says so without dying, and it alone is no second flash_attn."""
    done = _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "flash-attn-4==4.0.0b36",
                 "-d", str(tmp_path / "wh")])
    if done.returncode:
        pytest.skip(f"flash-attn-4 not downloadable here: {done.stderr[-300:]}")
    python = _venv_with(tmp_path, next((tmp_path / "wh").glob("flash_attn_4-*.whl")))
    report = _doctor(python)
    (fa4,) = [p for p in report["environment"]["neighbours"] if p["name"] == "flash-attn-4"]
    assert fa4["version"] == "4.0.0b36" and fa4["import_status"] == "broken"
    assert "flash_attn.cute" in fa4["import_error"]
    assert [p["name"] for p in report["environment"]["flash_attn_providers"]] == ["flash-attn-4"]
    assert not [f for f in report["findings"] if f["id"] == "flash-attn-providers"]
    assert _finding(report, "neighbour-flash-attn-4-import")["severity"] == "info"
