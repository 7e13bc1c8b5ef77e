"""The probe, run for real by real interpreters: this one, and throwaway venvs with torch absent,
broken or crashing, and with an installed kernel package whose extension fails to import."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fa_dist.decide import checks
from fa_dist.facts import detect as detect_mod
from fa_dist.facts import torch_files
from fa_dist.facts.detect import detect, probe
from fa_dist.model.environment import Environment, ImportStatus

from .envs import shared_venv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return root


def site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python3*/site-packages")
    return found


def python_of(venv: Path) -> str:
    return str(venv / "bin" / "python")


def test_python_section_describes_this_interpreter() -> None:
    raw = probe(sys.executable, "python")
    assert raw["executable"] == sys.executable
    assert raw["abi_tag"] == f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert raw["platform"] == sysconfig.get_platform()
    assert raw["in_venv"] == (sys.prefix != sys.base_prefix)


def test_torch_section_with_torch_importable() -> None:
    torch = pytest.importorskip("torch")
    raw = probe(sys.executable, "torch")
    assert raw["status"] == "ok"
    assert raw["version"] == torch.__version__
    assert raw["cxx11_abi"] == bool(torch._C._GLIBCXX_USE_CXX11_ABI)
    assert raw["cuda"] == torch.version.cuda


def test_bare_venv_has_no_torch(bare_venv: Path) -> None:
    raw = probe(python_of(bare_venv), "torch")
    assert raw["status"] == "missing" and "No module named 'torch'" in raw["error"]


@pytest.fixture
def venv_with(tmp_path: Path) -> Path:
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return root


def plant_module(venv: Path, name: str, body: str) -> None:
    pkg = site_packages(venv) / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(body)


def test_torch_that_cannot_find_libcudart_is_broken_not_a_crash(venv_with: Path) -> None:
    plant_module(venv_with, "torch", "raise ImportError('libcudart.so.13: cannot open shared "
                                     "object file: No such file or directory')\n")
    env = detect(python_of(venv_with))
    assert env.torch is not None and env.torch.status is ImportStatus.BROKEN
    finding = next(f for f in checks.run_checks(env) if f.id == "torch-import")
    assert finding.title == "torch fails to import (missing-cuda-lib)"


def test_torch_that_segfaults_on_import_is_reported(venv_with: Path) -> None:
    plant_module(venv_with, "torch", "import os\nos.abort()\n")
    env = detect(python_of(venv_with))
    assert env.torch is not None and env.torch.status is ImportStatus.BROKEN
    assert "killed by signal 6" in (env.torch.error or "")


def test_installed_kernel_package_with_failing_extension(venv_with: Path) -> None:
    sp = site_packages(venv_with)
    dist = sp / "fa_kernels-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fa-kernels\nVersion: 0.1.0\n")
    plant_module(venv_with, "fa_kernels", "raise ImportError('/x/_C.so: undefined symbol: _ZN3c10')\n")
    (sp / "fa_kernels/_build_info.json").write_text('{"torch": "2.14.1", "cuda": "13.0"}')
    env = detect(python_of(venv_with))
    (pkg,) = env.packages
    assert (pkg.name, pkg.version, pkg.import_status) == ("fa-kernels", "0.1.0", ImportStatus.BROKEN)
    assert "undefined symbol" in (pkg.import_error or "")
    assert pkg.build_info == {"torch": "2.14.1", "cuda": "13.0"}


def test_a_package_whose_import_kills_the_shared_probe_costs_only_its_own_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's facts and the kernel packages' imports share one process; a package that kills it is
    probed again alone (and reported broken), torch's facts printed before the crash are kept."""
    torch = pytest.importorskip("torch")
    python = shared_venv(tmp_path)  # this environment's real torch, none of our packages
    (sp,) = (tmp_path / "venv" / "lib").glob("python3*/site-packages")
    (sp / "fa_kernels-0.1.0.dist-info").mkdir()
    (sp / "fa_kernels-0.1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fa-kernels\nVersion: 0.1.0\n")
    (sp / "fa_kernels").mkdir()
    (sp / "fa_kernels" / "__init__.py").write_text("import os\nos.abort()\n")
    alone: list[tuple[str, ...]] = []
    real_probe = detect_mod.probe

    def counting(python: str, section: str, *args: str, timeout: float = 120.0) -> dict[str, object]:
        alone.append((section, *args[:1]))
        return real_probe(python, section, *args, timeout=timeout)

    monkeypatch.setattr(detect_mod, "probe", counting)
    env = detect(str(python))
    assert env.torch is not None and env.torch.version == torch.__version__  # from the shared process
    (pkg,) = [p for p in env.packages if p.name == "fa-kernels"]
    assert pkg.import_status is ImportStatus.BROKEN and "killed by signal 6" in (pkg.import_error or "")
    assert ("import", "fa-kernels") in alone and ("torch",) not in alone  # only the lost answer again


def test_detect_snapshot_round_trips_through_json() -> None:
    env = detect()
    assert Environment.from_json(env.to_json()) == env
    assert env.python is not None and env.python.executable == sys.executable


# -- the facts cache, with a real target interpreter --------------------------------------------

def plant_fake_torch(venv: Path, version: str, imports_log: Path) -> None:
    """A torch that imports in milliseconds and writes a line to ``imports_log`` each time it does."""
    plant_module(venv, "torch", f"with open({str(imports_log)!r}, 'a') as f:\n    f.write('import\\n')\n"
                                "from . import _C, cuda, version\n__version__ = version.__version__\n")
    pkg = site_packages(venv) / "torch"
    (pkg / "version.py").write_text(f"__version__ = {version!r}\ncuda = None\nhip = None\n")
    (pkg / "cuda.py").write_text("def is_available():\n    return False\n")
    (pkg / "_C.py").write_text("_GLIBCXX_USE_CXX11_ABI = True\n")


def imports_of(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_repeated_detect_takes_torchs_facts_from_the_cache(venv_with: Path, tmp_path: Path) -> None:
    log = tmp_path / "imports.log"
    plant_fake_torch(venv_with, "2.13.0+cpu", log)
    first = detect(python_of(venv_with))
    seen = imports_of(log)
    second = detect(python_of(venv_with))
    assert seen >= 1 and imports_of(log) == seen  # the second detect imported torch nowhere
    assert second.torch == first.torch and second.torch is not None
    assert (second.torch.version, second.torch.cxx11_abi) == ("2.13.0+cpu", True)
    detect(python_of(venv_with), refresh=True)
    assert imports_of(log) == seen + 1


def test_a_changed_torch_misses_the_cache(venv_with: Path, tmp_path: Path) -> None:
    log = tmp_path / "imports.log"
    plant_fake_torch(venv_with, "2.13.0+cpu", log)
    detect(python_of(venv_with))
    (site_packages(venv_with) / "torch/version.py").write_text("__version__ = '2.14.1'\ncuda = None\n")
    env = detect(python_of(venv_with))
    assert imports_of(log) == 2
    assert env.torch is not None and env.torch.version == "2.14.1"


def test_a_broken_torch_is_probed_every_time(venv_with: Path, tmp_path: Path) -> None:
    log = tmp_path / "imports.log"
    plant_module(venv_with, "torch", f"open({str(log)!r}, 'a').write('import\\n')\nraise ImportError('libc10.so')\n")
    detect(python_of(venv_with))
    detect(python_of(venv_with))
    assert imports_of(log) == 2


def test_one_thread_or_many_give_the_same_facts(venv_with: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    plant_fake_torch(venv_with, "2.13.0+cpu", tmp_path / "imports.log")
    concurrent = detect(python_of(venv_with), refresh=True).to_json()
    monkeypatch.setattr(detect_mod, "WORKERS", 1)
    serial = detect(python_of(venv_with), refresh=True).to_json()
    for snapshot in (concurrent, serial):
        snapshot.pop("captured_at")
        snapshot["resources"].pop("mem_available_mib")  # the one fact that moves between two runs
        snapshot["resources"].pop("disk_free_mib")
    assert serial == concurrent


def test_torchs_files_say_what_its_import_says(tmp_path: Path) -> None:
    """The file reader against the real torch installed here, and against it seen from a throwaway
    venv (through links, as a venv on a shared base sees it)."""
    imported = probe(sys.executable, "torch")
    if imported.get("status") != "ok":
        pytest.skip("no importable torch here")
    here = probe(sys.executable, "python")["torch_dir"]
    there = probe(shared_venv(tmp_path), "python")["torch_dir"]
    assert there != here
    for folder in (here, there):
        files = torch_files.read(Path(folder))
        assert {k: files[k] for k in ("version", "cuda", "hip", "cxx11_abi")} == {
            k: imported[k] for k in ("version", "cuda", "hip", "cxx11_abi")}


FAKE_FMHA = {  # a stand-in for xformers' fmha modules (the real _C needs CUDA): what the probe reads
    "xformers/__init__.py": "",
    "xformers/ops/__init__.py": "",
    "xformers/ops/fmha/__init__.py": "",
    "xformers/ops/fmha/cutlass.py": "class FwOp:\n    NAME = 'cutlassF-pt'\n    @classmethod\n"
                                    "    def info(cls):\n        return 'available'\n",
    "xformers/ops/fmha/flash.py": "class FwOp:\n    NAME = 'fa2F@2.8.3'\n    @classmethod\n"
                                  "    def info(cls):\n        return 'unavailable'\n",
    "xformers/ops/fmha/ck.py": "raise ImportError('ck is ROCm only')\n",
    "xformers-0.0.99.dist-info/METADATA": "Metadata-Version: 2.1\nName: xformers\nVersion: 0.0.99\n",
}


def test_xformers_fmha_ops_are_reported_as_its_info_says(venv_with: Path) -> None:
    for rel, text in FAKE_FMHA.items():
        path = site_packages(venv_with) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    raw = probe(python_of(venv_with), "import", "xformers", "xformers/cpp_lib.json", "xformers")
    assert raw["status"] == "ok"
    ops = raw["fmha_ops"]
    assert ops["cutlassF-pt"] == "available" and ops["fa2F@2.8.3"] == "unavailable"  # no GPU: no "usable here"
    assert ops["ck"].startswith("cannot tell: ImportError: ck is ROCm only")
    assert "flash3" not in ops and "small_k" not in ops  # modules this xformers lacks are left out
