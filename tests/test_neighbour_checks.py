"""Doctor's pure checks of the attention packages beside ours, on real snapshots (issue #18)."""

from __future__ import annotations

import pytest

from fa_dist.decide import checks, neighbours
from fa_dist.decide.checks import Severity
from fa_dist.model.environment import Gpu, ImportStatus, PackageInfo, Provider
from fa_dist.model.versions import Arch

from .envs import CPU, H100, mutate


def _pkg(name: str, version: str, requires: str | None = None, **kw: object) -> PackageInfo:
    return PackageInfo(name=name, version=version, location="/site", import_status=ImportStatus.OK,
                       requires_torch=requires, **kw)  # type: ignore[arg-type]


def _by_id(env: object, check_id: str) -> list[checks.Finding]:
    return [f for f in checks.run_checks(env) if f.id == check_id]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("torch", "wanted"),
    [("2.13.0+cpu", "xformers>=0.0.35"), ("2.10.0+cu130", "xformers>=0.0.35"),
     ("2.9.1+cu128", "xformers==0.0.33.post2"), ("2.8.0", "xformers==0.0.32.post2"), ("2.7.1", None)],
)
def test_xformers_release_for_each_torch(torch: str, wanted: str | None) -> None:
    assert neighbours.xformers_for(torch) == wanted


def test_xformers_pinned_to_another_torch_on_h100_is_an_error_with_a_no_deps_fix() -> None:
    env = mutate(H100(), neighbours=(_pkg("xformers", "0.0.34", "torch==2.10.0",
                                          build_info={"torch": "2.10.0+cu128"}),))
    (finding,) = _by_id(env, "neighbour-xformers")
    assert finding.severity is Severity.ERROR
    assert "torch==2.10.0" in finding.title and "2.11.0" in finding.title
    assert "built with torch 2.10.0+cu128" in finding.evidence
    assert finding.fix and "install --no-deps 'xformers>=0.0.35'" in finding.fix


def test_a_pure_python_neighbour_with_a_foreign_pin_only_warns_and_none_is_reported_twice() -> None:
    env = mutate(CPU(), neighbours=(_pkg("transformers", "5.17.0", "torch<2.0"),
                                    _pkg("xformers", "0.0.35", "torch>=2.10")))
    found = {f.id: f for f in checks.run_checks(env) if f.id.startswith("neighbour-")}
    assert found["neighbour-transformers"].severity is Severity.WARNING
    assert found["neighbour-xformers"].severity is Severity.OK
    assert len(found) == 2


def test_a_cuda_only_neighbour_on_a_cpu_torch_is_info() -> None:
    broken = mutate(_pkg("xformers", "0.0.35", "torch>=2.10"), import_status=ImportStatus.BROKEN,
                    import_error="import xformers._C: ImportError: libcudart.so.12: cannot open")
    (finding,) = _by_id(mutate(CPU(), neighbours=(broken,)), "neighbour-xformers-import")
    assert finding.severity is Severity.INFO and "libcudart" in finding.evidence


def test_fa3_on_an_a100_cannot_run_but_on_an_h100_is_quiet() -> None:
    env = mutate(H100(), neighbours=(_pkg("flash-attn-3", "3.0.0"),))
    assert _by_id(env, "neighbour-flash-attn-3-arch") == []
    a100 = Gpu(index=0, name="NVIDIA A100-SXM4-80GB", arch=Arch.parse("sm_80"), memory_mib=81920)
    (finding,) = _by_id(mutate(env, torch__devices=(a100,)), "neighbour-flash-attn-3-arch")
    assert finding.severity is Severity.WARNING and "sm_80" in finding.title


def test_two_flash_attn_providers_name_both_and_where_import_goes() -> None:
    env = mutate(H100(), flash_attn_origin="/venv/site/flash_attn/__init__.py", flash_attn_providers=(
        Provider(name="flash-attn", version="2.8.3+fakernels.0.1.0", location="/venv/site"),
        Provider(name="flash-attn", version="2.8.3", location="/image/site"),
        Provider(name="flash-attn-4", version="4.0.0b36", location="/image/site"),
    ))
    (finding,) = _by_id(env, "flash-attn-providers")
    assert finding.title == "2 installed packages provide flash_attn"
    assert "/venv/site/flash_attn/__init__.py" in finding.evidence
    assert finding.fix and finding.fix.startswith("fa-dist uninstall --flash-attn-compat")
