"""The facts cache's decisions, the driver readers' order and torch's file readers, as data."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from fa_dist.facts import factcache, host, torch_files
from fa_dist.model.environment import NvidiaDriver

from .envs import FIXTURES

OUT = FIXTURES / "outputs"
HEALTHY: dict[str, Any] = {
    "torch": {"status": "ok", "version": "2.13.0+cpu", "cuda_available": False, "cuda_error": None},
    "packages": {"fa-kernels": {"status": "ok"}},
    "neighbours": {},
}


class Probes:
    """Stand-ins for the probes that import torch, counting how often each ran."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.all_runs, self.sdpa_runs = answers, 0, 0

    def all(self) -> dict[str, Any]:
        self.all_runs += 1
        return dict(self.answers)

    def sdpa(self) -> dict[str, Any]:
        self.sdpa_runs += 1
        return {"sdpa": {"enabled": {}, "usable": {}, "chosen": {}}}


def test_second_lookup_is_a_hit_and_probes_nothing() -> None:
    probes = Probes(HEALTHY)
    first = factcache.cached({"torch": 1}, probes.all, probes.sdpa, sdpa=False, refresh=False)
    second = factcache.cached({"torch": 1}, probes.all, probes.sdpa, sdpa=False, refresh=False)
    assert probes.all_runs == 1
    assert second["torch"] == first["torch"] == HEALTHY["torch"]


def test_changed_identity_or_refresh_probes_again() -> None:
    probes = Probes(HEALTHY)
    factcache.cached({"torch": 1}, probes.all, probes.sdpa, sdpa=False, refresh=False)
    factcache.cached({"torch": 2}, probes.all, probes.sdpa, sdpa=False, refresh=False)
    factcache.cached({"torch": 2}, probes.all, probes.sdpa, sdpa=False, refresh=True)
    assert probes.all_runs == 3


def test_sdpa_asked_later_runs_only_the_sdpa_probe() -> None:
    probes = Probes(HEALTHY)
    factcache.cached({"t": 1}, probes.all, probes.sdpa, sdpa=False, refresh=False)
    with_sdpa = factcache.cached({"t": 1}, probes.all, probes.sdpa, sdpa=True, refresh=False)
    factcache.cached({"t": 1}, probes.all, probes.sdpa, sdpa=True, refresh=False)
    assert (probes.all_runs, probes.sdpa_runs) == (1, 1)
    assert "sdpa" in with_sdpa


@pytest.mark.parametrize("change", [
    {"torch": {"status": "broken", "error": "ImportError: libcudart.so.13"}},
    {"torch": {**HEALTHY["torch"], "cuda_error": "CUDA driver initialization failed"}},
    {"packages": {"fa-kernels": {"status": "broken", "error": "undefined symbol"}}},
    {"sdpa": {"error": "killed by signal 11"}},
])
def test_a_broken_target_is_never_kept(change: dict[str, Any]) -> None:
    probes = Probes({**HEALTHY, **change})
    for _ in range(2):
        factcache.cached({"t": 1}, probes.all, probes.sdpa, sdpa="sdpa" in change, refresh=False)
    assert probes.all_runs == 2
    assert not factcache.worth_keeping({**HEALTHY, **change})


def test_entries_are_written_whole_and_a_foreign_file_is_a_miss() -> None:
    factcache.store("k", HEALTHY)
    assert [p.name for p in factcache.folder().iterdir()] == ["k.json"]  # no temporary left behind
    assert factcache.load("k") == {"schema": factcache.SCHEMA, **HEALTHY}
    (factcache.folder() / "k.json").write_text("{not json")
    assert factcache.load("k") is None


def test_identity_follows_torchs_version_file(tmp_path: Path) -> None:
    torch_dir = tmp_path / "site/torch"
    torch_dir.mkdir(parents=True)
    (torch_dir / "version.py").write_text("__version__ = '2.13.0+cpu'\n")
    py = {"torch_dir": str(torch_dir), "sys_path": [str(tmp_path / "site")], "dists": [], "neighbours": []}
    before = factcache.key(factcache.identity("/venv/bin/python", py, {}))
    assert factcache.key(factcache.identity("/venv/bin/python", py, {"HOME": "/x"})) == before
    (torch_dir / "version.py").write_text("__version__ = '2.14.1+cu130'\n")
    after = factcache.key(factcache.identity("/venv/bin/python", py, {}))
    hidden = factcache.key(factcache.identity("/venv/bin/python", py, {"CUDA_VISIBLE_DEVICES": ""}))
    assert len({before, after, hidden}) == 3


# -- the NVIDIA driver: which reader answers ------------------------------------------------------

FROM_NVML = NvidiaDriver(version="580.159.04", cuda=None, source="nvml")
PROC_TEXT = (OUT / "h100/proc-driver-nvidia-version.txt").read_text()


def never() -> tuple[NvidiaDriver | None, str | None]:
    raise AssertionError("read although an earlier reader answered")


def test_nvml_answers_first() -> None:
    assert host.pick_driver(nvml=lambda: (FROM_NVML, None), proc_text=PROC_TEXT, smi=never) == (FROM_NVML, None)


def test_proc_answers_when_nvml_cannot_and_nvidia_smi_is_not_run() -> None:
    driver, why = host.pick_driver(nvml=lambda: (None, "libnvidia-ml.so.1 not loadable"),
                                   proc_text=PROC_TEXT, smi=never)
    assert why is None and driver is not None
    assert (driver.version, driver.source, driver.gpus) == ("580.159.04", "/proc/driver/nvidia/version", ())


def test_nvidia_smi_is_the_last_resort_and_every_reason_is_kept() -> None:
    calls = []

    def smi() -> tuple[NvidiaDriver | None, str | None]:
        calls.append("smi")
        return None, "exited 9: NVIDIA-SMI has failed"

    driver, why = host.pick_driver(nvml=lambda: (None, "nvmlInit failed (driver not loaded?)"),
                                   proc_text="garbage", smi=smi)
    assert driver is None and calls == ["smi"]
    assert why == ("NVML: nvmlInit failed (driver not loaded?); unparsable; "
                   "nvidia-smi: exited 9: NVIDIA-SMI has failed")


# -- torch's files -----------------------------------------------------------------------------

def test_version_py_of_old_and_new_torch_layouts() -> None:
    new = ("from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\n"
           "cuda: Optional[str] = '13.0'\ngit_version = 'abc'\nhip: Optional[str] = None\n")
    old = "__version__ = '1.13.1+rocm5.2'\ncuda = None\nhip = '5.2.21151-afdc89f8'\n"
    assert torch_files.parse_version_py(new) == {
        "version": "2.11.0+cu130", "cuda": "13.0", "git": "abc", "hip": None}
    assert torch_files.parse_version_py(old) == {
        "version": "1.13.1+rocm5.2", "cuda": None, "hip": "5.2.21151-afdc89f8"}
    assert torch_files.parse_version_py("cuda = compute()\n") == {}  # never evaluated


def test_abi_from_cmake_flags() -> None:
    assert torch_files.abi_from_cmake('set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")') is False
    assert torch_files.abi_from_cmake('set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")') is True
    assert torch_files.abi_from_cmake("set(TORCH_CXX_FLAGS)") is None


def installed_torch() -> Path:
    """The torch package folder this interpreter sees, found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("no torch installed here")
    return Path(next(iter(spec.submodule_search_locations)))


def test_abi_from_the_real_libc10() -> None:
    c10 = installed_torch() / "lib/libc10.so"
    if not c10.is_file():
        pytest.skip("torch without libc10.so")
    assert torch_files.abi_from_c10(c10.read_bytes()) is True  # every torch >= 2.7 wheel: new ABI
    assert torch_files.abi_from_c10(b"\x7fELF not really") is None
