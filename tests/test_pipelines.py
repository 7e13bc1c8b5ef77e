"""The pipelines' plans from real snapshots (pure: nothing runs), and a dry run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from fa_dist.errors import EnvironmentBroken, NoMatchingWheel
from fa_dist.options import BuildOptions, InstallOptions
from fa_dist.pipelines import build as build_pipeline
from fa_dist.pipelines import install as install_pipeline

from .envs import H100, load, mutate


def test_build_plan_from_the_h100_snapshot(tmp_path: Path) -> None:
    plan = build_pipeline.plan(H100(), BuildOptions(wheelhouse=tmp_path, jobs=3))
    assert plan.build.recipe.name == "cuda" and plan.wheelhouse == tmp_path
    assert plan.build.build_env["MAX_JOBS"] == "3" and not plan.clean


def test_build_plan_refuses_before_compiling() -> None:
    with pytest.raises(EnvironmentBroken, match="ninja"):
        build_pipeline.plan(mutate(H100(), ninja=None), BuildOptions())


def test_install_plan_needs_torch_and_decides_source_builds_once() -> None:
    with pytest.raises(EnvironmentBroken, match="torch is not installed"):
        install_pipeline.plan(load("cpu-no-torch"), InstallOptions())
    plan = install_pipeline.plan(mutate(H100(), nvcc=None), InstallOptions())
    assert not plan.source_build.allowed and "nvcc" in plan.source_build.ids


def test_install_dry_run_plans_a_build_with_builds_own_plan(tmp_path: Path) -> None:
    options = InstallOptions(wheelhouses=(tmp_path,), dry_run=True)
    outcome = install_pipeline.run(install_pipeline.plan(H100(), options))
    assert outcome.would is not None and outcome.would.startswith("build cuda 0.1.0+cu130torch2.10stableabi")  # the stable ABI (i14)
    assert outcome.wheel is None


def test_install_without_a_wheel_or_a_build_says_so(tmp_path: Path) -> None:
    options = InstallOptions(wheelhouses=(tmp_path,), no_build=True, dry_run=True)
    with pytest.raises(NoMatchingWheel):
        install_pipeline.run(install_pipeline.plan(H100(), options))


def test_uninstall_is_a_pipeline_behind_the_library_api(tmp_path: Path) -> None:
    import fa_dist
    from fa_dist.errors import ConfigError
    from fa_dist.options import Target, UninstallOptions

    missing = UninstallOptions(target=Target(python=str(tmp_path / "python")), compat_only=True)
    with pytest.raises(ConfigError, match="no such executable"):
        fa_dist.uninstall(missing)


def test_the_library_api_never_acts_on_a_snapshot(tmp_path: Path) -> None:
    """A snapshot's interpreter and toolchain are another machine's: install is a dry run, a build is
    refused (the CLI always did so; the library API now does too)."""
    import fa_dist
    from fa_dist.errors import ConfigError
    from fa_dist.options import Target

    snapshot = Target(env_file=Path(__file__).parent / "fixtures" / "envs" / "h100-torch2.11-cu130.json")
    outcome = fa_dist.install(InstallOptions(target=snapshot, wheelhouses=(tmp_path,), offline=True))
    assert outcome.would is not None and outcome.wheel is None and outcome.record is None
    plan = build_pipeline.plan(H100(), BuildOptions(target=snapshot, wheelhouse=tmp_path))
    with pytest.raises(ConfigError, match="made from a snapshot") as refused:
        build_pipeline.run(plan)
    assert "--plan" in (refused.value.fix or "")
    with pytest.raises(ConfigError, match="made from a snapshot"):
        fa_dist.build(BuildOptions(target=snapshot, wheelhouse=tmp_path))
    assert not list(tmp_path.iterdir())  # nothing built, nothing written
