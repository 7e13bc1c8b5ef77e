"""The install pipeline behind `fa-dist install`: ``plan(env, options)`` checks the facts and decides
whether building from source is possible; ``run(plan, reporter)`` takes the named steps in STEPS
(resolve, build, fetch, backup, pip, smoke, record). A failed pip or smoke step puts the previous
install back; a dry run stops after deciding what it would install."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from fa_dist.act import install as act_install
from fa_dist.act import smoke as act_smoke
from fa_dist.act import wheelhouse
from fa_dist.decide import checks, resolve
from fa_dist.errors import EnvironmentBroken, InstallFailed, NoMatchingWheel, SmokeFailed
from fa_dist.model.environment import Environment
from fa_dist.model.variant import Variant
from fa_dist.options import BuildOptions, InstallOptions
from fa_dist.paths import default_wheelhouse
from fa_dist.pipelines import build as build_pipeline
from fa_dist.reporter import Reporter, Silent


@dataclass(frozen=True, kw_only=True)
class Plan:
    env: Environment
    options: InstallOptions
    folders: tuple[Path, ...]  # local wheelhouses; a build lands in the first
    source_build: checks.SourceBuild


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A dry run fills ``would`` (what it would do) and ``trace``; an install fills the rest."""

    trace: tuple[str, ...]
    would: str | None = None
    wheel: str | None = None
    source: str | None = None
    sha256: str | None = None
    smoke: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    record: str | None = None


def plan(env: Environment, options: InstallOptions) -> Plan:
    """Pure: refuse without a working torch (kernels run through it), decide where wheels are looked
    for and whether this machine could build from source."""
    torch_error = next(
        (f for f in checks.check_torch(env) if f.severity is checks.Severity.ERROR), None
    )
    if torch_error is not None:
        raise EnvironmentBroken(
            f"{torch_error.title}: {torch_error.evidence}",
            fix=torch_error.fix or "see fa-dist doctor",
        )
    return Plan(
        env=env,
        options=options,
        folders=options.wheelhouses or (default_wheelhouse(),),
        source_build=checks.source_build(checks.run_checks(env)),
    )


@dataclass
class _Run:
    """What the steps of one run hand each other."""

    plan: Plan
    reporter: Reporter
    backup_dir: Path
    resolution: resolve.Resolution | None = None
    choice: resolve.Candidate | None = None
    wheel: Path | None = None
    sha256: str = ""
    backup: act_install.Backup | None = None
    smoke: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    outcome: Outcome | None = None

    @property
    def trace(self) -> tuple[str, ...]:
        return tuple(self.resolution.lines()) if self.resolution else ()


def describe(env: Environment) -> str:
    torch = env.torch.version if env.torch and env.torch.version else "no torch"
    gpus = ", ".join(sorted({str(g.arch) for g in env.visible_gpus if g.arch})) or "no GPU"
    python = env.python.abi_tag if env.python else "?"
    return f"{python}, torch {torch}, {gpus}"


def resolve_wheel(run: _Run) -> None:
    options = run.plan.options
    candidates = act_install.gather(
        run.plan.folders,
        options.find_links,
        options.index_urls,
        options.offline,
        options.allow_insecure_http,
    )
    run.resolution = resolve.resolve(run.plan.env, candidates)
    run.choice = run.resolution.choice
    run.reporter.step(f"resolve: {len(candidates)} candidate wheel(s)")
    for line in run.resolution.lines():
        run.reporter.note(f"        {line}")


def _compiled(cand: resolve.Candidate) -> bool:
    version = str(parse_wheel_filename(cand.filename)[1])
    return Variant.from_local_version(version) is not None


def recipe_to_build(run: _Run) -> str | None:
    """The recipe to build when no compiled wheel matches: one for this GPU when the toolchain
    allows, else the pure-Triton one; None when nothing should be built (forbidden, or the matching
    pure-Triton wheel is already at hand)."""
    if run.plan.options.no_build:
        return None
    if run.plan.source_build.allowed:
        return "auto"
    blockers = ", ".join(run.plan.source_build.ids)
    if run.choice is not None:
        run.reporter.step(
            f"no compiled wheel matches, and building is blocked by {blockers}: "
            "using the pure-Triton wheel (Triton kernels only)"
        )
        return None
    run.reporter.step(
        f"building from source is blocked by {blockers}: "
        "building the pure-Triton wheel instead (Triton kernels only, no compiled backend)"
    )
    return "triton"


def build_if_needed(run: _Run) -> None:
    """Build (with the build pipeline itself) when asked to or when no compiled wheel matches."""
    if not (run.plan.options.from_source or run.choice is None or not _compiled(run.choice)):
        return
    recipe = recipe_to_build(run)
    if recipe is None:
        return
    options = BuildOptions(recipe=recipe, wheelhouse=run.plan.folders[0])
    if run.plan.options.dry_run:
        build = build_pipeline.plan(run.plan.env, options).build
        archs = " ".join(map(str, build.archs.archs)) if build.archs else "any GPU"
        would = f"build {build.recipe.name} {build.version} for {archs}, then install it"
        run.reporter.step(f"plan: {would}")
        run.outcome = Outcome(would=would, trace=run.trace)
        return
    try:
        built = build_pipeline.run(build_pipeline.plan(run.plan.env, options), run.reporter)
    except EnvironmentBroken as exc:
        run.reporter.step(f"cannot build: {exc.message}")
        return
    run.reporter.step(f"build: {recipe} wheel in {run.plan.folders[0]}")
    run.choice = resolve.Candidate(
        filename=built.entry.filename,
        location=str(built.wheel),
        sha256=built.entry.sha256,
        archs=built.entry.archs,
        ptx=built.entry.extra.get("ptx"),
        source="wheelhouse",
    )


def choose(run: _Run) -> None:
    if run.choice is None:
        raise NoMatchingWheel(
            "no wheel matches this machine:\n  " + "\n  ".join(run.trace),
            fix="fa-dist build (then fa-dist install), or point --wheelhouse/--index-url "
            "at wheels built for this torch",
        )
    run.reporter.step(f"plan: {run.choice.filename} from {run.choice.source}")
    if run.plan.options.dry_run:
        run.outcome = Outcome(would=run.choice.filename, source=run.choice.source, trace=run.trace)


def fetch(run: _Run) -> None:
    assert run.choice is not None
    started = time.perf_counter()
    if "://" in run.choice.location:
        with run.reporter.progress("fetch", unit="bytes") as progress:
            run.wheel = act_install.fetch(run.choice, progress=progress)
    else:
        run.wheel = act_install.fetch(run.choice)
    run.timings["fetch"] = time.perf_counter() - started
    # fetch verified a recorded hash; a wheel without one is hashed for the record
    run.sha256 = run.choice.sha256 or wheelhouse.sha256_of(run.wheel)


def backup(run: _Run) -> None:
    run.backup = act_install.backup_installed(run.plan.env, run.backup_dir)


def _python(run: _Run) -> str:
    assert run.plan.env.python is not None
    return run.plan.env.python.executable


def pip(run: _Run) -> None:
    assert run.wheel is not None and run.backup is not None
    started = time.perf_counter()
    done = act_install.pip_install(_python(run), run.wheel)
    run.timings["install"] = time.perf_counter() - started
    if not done.ok:
        undone = act_install.rollback(_python(run), run.backup)
        raise InstallFailed(
            f"pip could not install {run.wheel.name}: {done.describe_failure()}; {undone}"
        )
    run.reporter.step(f"installed {run.wheel.name} ({run.timings['install']:.1f} s)")


def smoke(run: _Run) -> None:
    """The quick smoke test in the target interpreter; a failure restores the previous install."""
    if not run.plan.options.smoke:
        return
    assert run.backup is not None
    python, started = _python(run), time.perf_counter()
    try:
        result = act_smoke.run(python, quick=True)
    except SmokeFailed as exc:  # the test could not run to the end
        undone = act_install.rollback(python, run.backup)
        raise InstallFailed(f"{exc.message}; {undone}", fix=exc.fix) from None
    run.timings["smoke"] = time.perf_counter() - started
    if not result.passed:
        undone = act_install.rollback(python, run.backup)
        failed = [c for c in result.data["cases"] if not c["passed"]]
        raise InstallFailed(
            f"the smoke test failed ({len(failed)} case(s), e.g. {failed[0]['op']} "
            f"{failed[0]['shape']}: {failed[0]['error'] or 'error too large'}); {undone}",
            fix=f"see every case: fa-dist smoke --python {python}",
        )
    run.smoke = result.data
    run.reporter.step(f"smoke: passed on {result.data['device']} ({run.timings['smoke']:.1f} s)")


def record(run: _Run) -> None:
    assert run.choice is not None and run.wheel is not None
    path = act_install.write_record(run.plan.env, run.choice, run.sha256, run.smoke)
    run.reporter.step(f"record: {path}")
    run.outcome = Outcome(
        wheel=run.wheel.name,
        source=run.choice.source,
        sha256=run.sha256,
        smoke=run.smoke,
        seconds=dict(run.timings),
        total_seconds=run.reporter.elapsed(),
        record=str(path),
        trace=run.trace,
    )


STEPS = (resolve_wheel, build_if_needed, choose, fetch, backup, pip, smoke, record)


def run(plan: Plan, reporter: Reporter | None = None) -> Outcome:
    """Take the steps in order until one of them ends the run (a dry run ends once it knows)."""
    reporter = reporter or Silent()
    with tempfile.TemporaryDirectory(prefix="fa-dist-backup-") as folder:
        state = _Run(plan=plan, reporter=reporter, backup_dir=Path(folder))
        for step in STEPS:
            if state.outcome is not None:
                break
            step(state)
    assert state.outcome is not None
    return state.outcome
