"""The smoke test's process started ahead (act/smoke.Standby): it waits for "go" on its standard input,
is used by smoke.run when it runs that very test, and ends when it is not. A stand-in interpreter (a
shell script) plays the target: it ignores its arguments, waits on standard input as the real wrapper
does, and prints a smoke result only after "go"."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fa_dist.act import smoke
from fa_dist.errors import SmokeFailed

pytestmark = pytest.mark.integration  # real processes

RESULT = {"passed": True, "device": "stand-in", "fa_kernels": "0.1.0", "backends": ["triton"],
          "cases": [{"op": "attention", "backend": "triton", "shape": "s", "passed": True, "error": "",
                     "speed": "-", "max_err": 0.0, "tolerance": 1.0}]}


def stand_in(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "ended"
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        "read line\n"
        f'[ "$line" = go ] || {{ echo "no go: $line" > {marker}; exit 0; }}\n'
        """echo 'FA_DIST_SMOKE_FILE "/site/fa_kernels/__init__.py"'\n"""
        f"echo '{json.dumps(RESULT)}'\n")
    script.chmod(0o755)
    return str(script), marker


def test_run_uses_the_waiting_process(tmp_path: Path) -> None:
    python, marker = stand_in(tmp_path)
    with smoke.Standby(python, quick=True) as ready:
        result = smoke.run(python, quick=True, timeout=30, standby=ready)
    assert result.passed and result.data["device"] == "stand-in"
    assert result.module == "/site/fa_kernels/__init__.py" and not marker.exists()
    # without it the stand-in reads no "go" (its input is empty) and prints nothing: a failed test
    with pytest.raises(SmokeFailed, match="did not run to the end"):
        smoke.run(python, quick=True, timeout=30)


def test_a_standby_left_unused_ends_and_another_test_is_not_given_it(tmp_path: Path) -> None:
    python, _marker = stand_in(tmp_path)
    with smoke.Standby(python, quick=True) as ready:
        assert ready.take(python, quick=False) is None  # the full test was asked for: not this one
        assert ready.take(python, quick=True) is None  # and it is gone
    with smoke.Standby(python, quick=True) as unused:
        proc = unused._proc
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None  # leaving the block ended it


def test_a_standby_that_cannot_start_is_no_standby(tmp_path: Path) -> None:
    with smoke.Standby(str(tmp_path / "missing-python"), quick=True) as ready:
        assert ready.take(str(tmp_path / "missing-python"), quick=True) is None


def test_a_standby_that_died_before_go_leaves_the_test_to_a_fresh_process(tmp_path: Path) -> None:
    script = tmp_path / "python"
    script.write_text(  # dies at once when started as a standby (its input a pipe), else passes
        "#!/bin/sh\n"
        "[ -p /dev/stdin ] && kill -SEGV $$\n"
        """echo 'FA_DIST_SMOKE_FILE "/site/fa_kernels/__init__.py"'\n"""
        f"echo '{json.dumps(RESULT)}'\n")
    script.chmod(0o755)
    with smoke.Standby(str(script), quick=True) as ready:
        time.sleep(0.5)  # it is gone before fa-dist says go
        result = smoke.run(str(script), quick=True, timeout=30, standby=ready)
    assert result.passed


# -- the real wrapper in a real interpreter ------------------------------------------------------------

FAKE_SMOKE = (  # CASE: one case as a Python literal
    "import json, sys\n"
    "ahead = 'torch' in sys.modules\n"
    "print(json.dumps({'passed': True, 'device': f'torch loaded before: {ahead}',\n"
    "                  'fa_kernels': '9.9', 'backends': ['triton'], 'cases': [CASE]}))\n")


def venv_with(tmp_path: Path, torch_site: str | None) -> tuple[str, Path]:
    """A bare venv -> (its python, its site-packages); ``torch_site`` on its path through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    python = str(tmp_path / "v" / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    if torch_site:
        (site / "torch-site.pth").write_text(torch_site + "\n")
    return python, site


def install_fake_kernels(site: Path) -> None:
    (site / "fa_kernels").mkdir()
    (site / "fa_kernels" / "__init__.py").write_text("__version__ = '9.9'\n")
    case = json.dumps(RESULT["cases"][0]).replace("true", "True").replace("false", "False")
    (site / "fa_kernels" / "smoke.py").write_text(FAKE_SMOKE.replace("CASE", case))


def test_the_real_wrapper_imports_torch_ahead_and_the_package_installed_after_it_started(tmp_path: Path) -> None:
    import torch

    python, site = venv_with(tmp_path, str(Path(torch.__file__).parent.parent))
    python = smoke.interpreter_path(python) or python
    with smoke.Standby(python, quick=True) as ready:
        time.sleep(0.3)
        install_fake_kernels(site)  # "pip install" while the standby waits
        result = smoke.run(python, quick=True, timeout=120, standby=ready, inside=[site])
    assert result.passed and result.data["device"] == "torch loaded before: True"
    assert result.module == str(site / "fa_kernels" / "__init__.py")


def test_a_torch_that_fails_to_import_is_reported_as_it_failed(tmp_path: Path) -> None:
    python, site = venv_with(tmp_path, None)
    (site / "torch").mkdir()
    marker = tmp_path / "imported-once"
    (site / "torch" / "__init__.py").write_text(  # a second import in the same process fails otherwise
        "import os\n"
        f"if os.path.exists({str(marker)!r}):\n"
        "    raise ImportError('a second import of a half-initialised torch')\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "raise RuntimeError('simulated: a broken dependency of torch')\n")
    install_fake_kernels(site)
    (site / "fa_kernels" / "__init__.py").write_text("import torch\n")
    with smoke.Standby(python, quick=True) as ready, pytest.raises(SmokeFailed) as failed:
        smoke.run(python, quick=True, timeout=120, standby=ready)
    assert "simulated: a broken dependency of torch" in str(failed.value)
    assert "second import" not in str(failed.value)
