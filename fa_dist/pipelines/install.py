"""The install pipeline behind `fa-dist install`: ``plan(env, options)`` checks the facts and decides
whether building from source is possible; ``run(plan, reporter)`` takes the named steps in STEPS
(resolve, build, choose, install, record); install is one transaction (fetch, back up, pip, smoke,
the flash-attn compat when asked) that puts the previous install back on any failure; a dry run stops
after deciding what it would install."""

from __future__ import annotations

import contextlib
import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from fa_dist.act import compat_install
from fa_dist.act import install as act_install
from fa_dist.act import smoke as act_smoke
from fa_dist.decide import build_plan, checks, compat, resolve
from fa_dist.errors import ConfigError, EnvironmentBroken, NoMatchingWheel
from fa_dist.facts import target as target_mod
from fa_dist.model import compat as compat_id
from fa_dist.model.environment import Environment
from fa_dist.model.variant import Variant
from fa_dist.model.wheel import Candidate
from fa_dist.options import BuildOptions, InstallOptions
from fa_dist.paths import default_wheelhouse
from fa_dist.pipelines import build as build_pipeline
from fa_dist.reporter import Progress, Reporter, Silent
from fa_dist.sources import kernels_dir


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
    verified: bool = True  # False: the source gave no sha256 to check (--allow-unverified)
    smoke: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    record: str | None = None
    compat: dict[str, Any] | None = None  # the flash-attn compat's record entry, when installed


def plan(env: Environment, options: InstallOptions) -> Plan:
    """Pure: refuse without a working torch (kernels run through it), decide where wheels are looked
    for and whether this machine could build from source. A snapshot's interpreter is another
    machine's: from a snapshot the run is a dry run."""
    if options.target.env_file is not None:
        options = dataclasses.replace(options, dry_run=True)
    torch_error = next(
        (f for f in checks.check_torch(env) if f.severity is checks.Severity.ERROR), None
    )
    if torch_error is not None:
        raise EnvironmentBroken(
            f"{torch_error.title}: {torch_error.evidence}",
            fix=torch_error.fix or "see fa-dist doctor",
        )
    if options.flash_attn_compat:
        compat.refuse_over_upstream(env)  # before anything is built or changed
    return Plan(
        env=env,
        options=options,
        folders=options.wheelhouses or (default_wheelhouse(),),
        source_build=checks.source_build(checks.run_checks(env)),
    )


def standby(options: InstallOptions) -> AbstractContextManager[act_smoke.Standby | None]:
    """Start the install's smoke-test process now, before detection: it imports torch meanwhile and
    runs the test once the wheel is in (act/smoke.Standby). Nothing when no smoke test will run here."""
    if not options.smoke or options.dry_run or options.target.env_file is not None:
        return contextlib.nullcontext()
    python = act_smoke.interpreter_path(target_mod.resolve_python(options.target.python))
    if python is None:  # detection says why, in its own words
        return contextlib.nullcontext()
    return act_smoke.Standby(python, quick=act_smoke.INSTALL_QUICK)


@dataclass
class _Run:
    """What the steps of one run hand each other."""

    plan: Plan
    reporter: Reporter
    standby: act_smoke.Standby | None = None
    resolution: resolve.Resolution | None = None
    choice: Candidate | None = None
    compat_step: compat_install.CompatStep | None = None
    installed: act_install.Outcome | None = None
    outcome: Outcome | None = None

    @property
    def trace(self) -> tuple[str, ...]:
        return tuple(self.resolution.lines()) if self.resolution else ()


def describe(env: Environment) -> str:
    torch = env.torch.version if env.torch and env.torch.version else "no torch"
    gpus = ", ".join(sorted({str(g.arch) for g in env.visible_gpus if g.arch})) or "no GPU"
    python = env.python.abi_tag if env.python else "?"
    return f"{python}, torch {torch}, {gpus}"


def carried_digest() -> str | None:
    """The digest of the kernel sources this fa-dist builds from, as a build records it in the
    wheelhouse manifest; None when it carries none (then no wheel is judged stale)."""
    # no or damaged sources, or an unwritable cache to unpack them into: nothing is judged stale
    try:
        return build_plan.source_digest(kernels_dir())
    except (ConfigError, OSError):
        return None


def resolve_wheel(run: _Run) -> None:
    options = run.plan.options
    candidates = act_install.gather(
        run.plan.folders,
        options.find_links,
        options.index_urls,
        options.offline,
        options.allow_insecure_http,
        options.allow_unverified,
        source_digest=carried_digest(),
    )
    run.resolution = resolve.resolve(run.plan.env, candidates)
    run.choice = run.resolution.choice
    run.reporter.step(f"resolve: {len(candidates)} candidate wheel(s)")
    for line in run.resolution.lines():
        run.reporter.note(f"        {line}")


def _compiled(cand: Candidate) -> bool:
    version = str(parse_wheel_filename(cand.filename)[1])
    return Variant.from_local_version(version) is not None


def recipe_to_build(run: _Run) -> str | None:
    """The recipe to build when no compiled wheel matches (or --from-source): one for this GPU when
    the toolchain allows, else the pure-Triton one; None when nothing should be built (forbidden, or
    the matching pure-Triton wheel is already at hand). --from-source with the build blocked is
    EnvironmentBroken, naming the blockers."""
    if run.plan.options.no_build:
        return None
    if run.plan.source_build.allowed:
        return "auto"
    blockers = ", ".join(run.plan.source_build.ids)
    if run.plan.options.from_source:  # asked for a build: never fall back to a wheel silently
        found = run.plan.source_build.blockers
        raise EnvironmentBroken(
            f"--from-source, but building from source is blocked by {blockers}:\n  "
            + "\n  ".join(f"{f.id}: {f.title} ({f.evidence})" for f in found),
            fix=" ; ".join(f.fix for f in found if f.fix) or "see fa-dist doctor",
        )
    if run.choice is not None:  # the pure-Triton wheel: a compiled one would not be built over
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
    if run.standby is not None and recipe != "triton":
        run.standby.close()  # a compiled build takes minutes: free the waiting process's memory
    if run.plan.options.dry_run:
        build = build_pipeline.plan(run.plan.env, options).build
        archs = " ".join(map(str, build.archs.archs)) if build.archs else "any GPU"
        would = f"build {build.recipe.name} {build.version} for {archs}, then install it"
        would += _compat_plan(run, build.version)
        run.reporter.step(f"plan: {would}")
        run.outcome = Outcome(would=would, trace=run.trace)
        return
    try:
        built = build_pipeline.run(build_pipeline.plan(run.plan.env, options), run.reporter)
    except EnvironmentBroken as exc:
        run.reporter.step(f"cannot build: {exc.message}")
        return
    run.reporter.step(f"build: {recipe} wheel in {run.plan.folders[0]}")
    run.choice = Candidate(
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
    also = _compat_plan(run, str(parse_wheel_filename(run.choice.filename)[1]))
    run.reporter.step(f"plan: {run.choice.filename} from {run.choice.source}{also}")
    if run.plan.options.dry_run:
        would = run.choice.filename + also
        run.outcome = Outcome(would=would, source=run.choice.source, trace=run.trace)


def _compat_plan(run: _Run, kernels_version: str) -> str:
    if not run.plan.options.flash_attn_compat:
        return ""
    return f", then the flash-attn compat {compat_id.version_for(kernels_version)} beside it"


def _progress(run: _Run) -> AbstractContextManager[Progress | None]:
    """A download bar for a wheel that comes over the network; none for a local file."""
    assert run.choice is not None
    if "://" in run.choice.location:
        return run.reporter.progress("fetch", unit="bytes")
    return contextlib.nullcontext()


def install(run: _Run) -> None:
    """Fetch and check the wheel, then one transaction (act/install.py): back up, pip install, smoke
    test, the flash-attn compat when asked (its own build, install and smoke test), record. Any
    failure before the record is written puts the previous install back."""
    assert run.resolution is not None and run.choice is not None
    options, env = run.plan.options, run.plan.env
    run.resolution = dataclasses.replace(run.resolution, choice=run.choice)
    if options.flash_attn_compat:
        version = str(parse_wheel_filename(run.choice.filename)[1])
        run.compat_step = compat_install.CompatStep(
            env,
            version,
            smoke=options.smoke,
            log=run.reporter.step,
            smoke_timeout=options.smoke_timeout,
        )
    with _progress(run) as progress:
        run.installed = act_install.install(
            env,
            run.resolution,
            log=run.reporter.step,
            progress=progress,
            options=act_install.Options(
                run_smoke=options.smoke,
                smoke_timeout=options.smoke_timeout,
                warm=options.warm,
                allow_insecure_http=options.allow_insecure_http,
                allow_unverified=options.allow_unverified,
                smoke_standby=run.standby,
            ),
            then=run.compat_step.run if run.compat_step else None,
        )
    if run.installed.smoke:
        seconds = run.installed.seconds.get("smoke", 0)
        run.reporter.step(f"smoke: passed on {run.installed.smoke['device']} ({seconds:.1f} s)")


def record(run: _Run) -> None:
    """act/install.py wrote the record (the compat's entry included) inside the transaction; the
    outcome is what the run did."""
    installed = run.installed
    assert installed is not None and run.choice is not None
    entry = run.compat_step.entry if run.compat_step is not None else None
    run.reporter.step(f"record: {installed.record}")
    run.outcome = Outcome(
        wheel=installed.wheel,
        source=installed.source,
        sha256=installed.sha256,
        verified=installed.verified,
        smoke=installed.smoke,
        seconds=dict(installed.seconds),
        total_seconds=run.reporter.elapsed(),
        record=installed.record,
        compat=entry,
        trace=run.trace,
    )


STEPS = (resolve_wheel, build_if_needed, choose, install, record)


def run(
    plan: Plan, reporter: Reporter | None = None, standby: act_smoke.Standby | None = None
) -> Outcome:
    """Take the steps in order until one of them ends the run (a dry run ends once it knows).
    ``standby``: the smoke test's process started ahead (``standby(options)``), if any."""
    state = _Run(plan=plan, reporter=reporter or Silent(), standby=standby)
    for step in STEPS:
        if state.outcome is not None:
            break
        step(state)
    assert state.outcome is not None
    return state.outcome
