"""The build pipeline behind `fa-dist build`: ``plan(env, options)`` decides everything from facts, then
``run(plan, reporter)`` takes the named steps in STEPS (reuse a finished wheel, or compile, then put
the wheel into the wheelhouse) and returns the wheel as a value."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fa_dist.act import build as act_build
from fa_dist.act import warm as act_warm
from fa_dist.act import wheelhouse, wheelpatch
from fa_dist.decide import build_plan, checks, recipes
from fa_dist.decide.recipes import Kind, Recipe
from fa_dist.errors import ConfigError, EnvironmentBroken, WarmFailed
from fa_dist.facts import libstdcxx
from fa_dist.model.environment import Environment
from fa_dist.model.wheel import WheelEntry
from fa_dist.options import BuildOptions
from fa_dist.paths import build_dir, default_wheelhouse
from fa_dist.reporter import Reporter, Silent
from fa_dist.sources import kernels_dir


@dataclass(frozen=True, kw_only=True)
class Plan:
    env: Environment
    build: build_plan.BuildPlan
    kernels: Path  # the sources to build
    wheelhouse: Path
    clean: bool
    precompile: bool = True  # put this GPU's compiled Triton kernels into the wheel, where it can
    from_snapshot: bool = False  # made from a saved snapshot: a plan to show, never to build


@dataclass(frozen=True, kw_only=True)
class Outcome:
    plan: Plan
    wheel: Path
    entry: WheelEntry
    reused: str  # "wheel", "objects: compiled k of n sources, reused the rest", or ""
    seconds: float
    log: Path | None  # None when a finished wheel was reused


def kernel_version(kernels: Path) -> str:
    text = (kernels / "fa_kernels" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ConfigError(f"{kernels}/fa_kernels/__init__.py has no __version__")
    return match[1]


def refuse_if_blocked(env: Environment, recipe: Recipe) -> None:
    """Stop before compiling anything when doctor already knows the build cannot work."""
    if not recipe.compiled:
        return
    verdict = checks.source_build(checks.run_checks(env), needs_gpu=recipe.kind is not Kind.CUDA)
    blockers = verdict.blockers
    if blockers:
        lines = [f"{f.id}: {f.title} ({f.evidence})" for f in blockers]
        fixes = [f.fix for f in blockers if f.fix]
        raise EnvironmentBroken(
            "cannot build from source here:\n  " + "\n  ".join(lines),
            fix=" ; ".join(fixes) or "see fa-dist doctor",
        )


def plan(env: Environment, options: BuildOptions) -> Plan:
    """What the build will do, refusing early (EnvironmentBroken) when doctor knows it cannot work.
    Reads only the kernel sources (their version and digest; an installed fa-dist unpacks its
    verified bundle into the cache first); changes nothing else."""
    kernels = kernels_dir()  # the checkout's kernels/, else the verified bundle (sources.py)
    recipe = build_plan.choose_recipe(options.recipe, env, recipes.load_all(source_root=kernels))
    refuse_if_blocked(env, recipe)
    decided = build_plan.plan(
        env,
        recipe,
        arch_request=options.arch,
        jobs_override=options.jobs,
        kernel_version=kernel_version(kernels),
        source_digest=build_plan.source_digest(kernels),
        ptx=options.ptx,
        abi_request=options.abi,
    )
    return Plan(
        env=env,
        build=decided,
        kernels=kernels,
        wheelhouse=options.wheelhouse or default_wheelhouse(),
        clean=options.clean,
        precompile=options.precompile,
        from_snapshot=options.target.env_file is not None,
    )


def write_config(plan: Plan, path: Path) -> None:
    """The build config for a build driven by another frontend (cibuildwheel): the same config, hence
    the same wheel name and build metadata as `fa-dist build`."""
    if not plan.build.recipe.compiled:
        raise ConfigError(
            f"recipe {plan.build.recipe.name!r} compiles nothing: there is no build config to write"
        )
    objects = build_dir() / plan.build.build_key / "objects"
    config = act_build.build_config(plan.build, plan.env, objects)
    path.write_text(json.dumps(config, indent=1) + "\n")


@dataclass
class _Run:
    """What the steps of one run hand each other."""

    plan: Plan
    reporter: Reporter
    started: float = field(default_factory=time.perf_counter)
    compiled: act_build.Compiled | None = None
    outcome: Outcome | None = None


def reuse(run: _Run) -> None:
    """A finished wheel from the same sources for the same target, if the wheelhouse has it intact."""
    folder = run.plan.wheelhouse
    entry = None if run.plan.clean else build_plan.reusable(run.plan.build, wheelhouse.read(folder))
    if entry is None or not wheelhouse.verified(folder, entry):
        return
    if libstdcxx.wheel_problem(folder / entry.filename) is not None:
        return  # built before fa-dist checked the C++ runtime it links (issue #10): rebuild it
    run.reporter.note(
        f"[green]reused[/] the finished wheel {entry.filename} (same sources, same target; "
        "--clean rebuilds)"
    )
    wheel = folder / entry.filename
    run.outcome = Outcome(
        plan=run.plan, wheel=wheel, entry=entry, reused="wheel", seconds=0.0, log=None
    )


def compile_wheel(run: _Run) -> None:
    build = run.plan.build
    run.reporter.note(
        f"building [bold]{build.recipe.name}[/] {build.version} for {build.python_tag}"
        + (f", archs {build.archs.torch_arch_list}" if build.archs else "")
        + (f", MAX_JOBS={build.jobs.max_jobs}" if build.jobs else "")
    )
    for note in build.notes:
        if note.startswith("C++ compiler:"):
            run.reporter.note(f"  {note}")
    with run.reporter.progress("compiling", unit="steps") as progress:
        run.compiled = act_build.compile_wheel(
            build, run.plan.env, kernels=run.plan.kernels, clean=run.plan.clean, progress=progress
        )


def precompile(run: _Run) -> None:
    """Run the new wheel's Triton kernels once each on this GPU (fa_kernels.warm) and put what Triton
    compiled into the wheel: installed on a machine like this one, its first calls load instead of
    compiling. Skipped (with the reason) where that cannot run; a failure leaves the wheel as built."""
    assert run.compiled is not None
    why = None if run.plan.precompile else "--no-precompile"
    why = why or build_plan.precompile_skip(run.plan.env, run.plan.build)
    if why is not None:
        run.reporter.note(f"precompile: skipped ({why}); `fa-dist install` does it where it can")
        return
    python = run.plan.env.python.executable if run.plan.env.python else sys.executable
    with tempfile.TemporaryDirectory(prefix="fa-dist-precompile-") as unpacked:
        with zipfile.ZipFile(run.compiled.wheel) as wheel:
            wheel.extractall(unpacked)  # our own wheel, just built
        try:
            with run.reporter.progress("precompile", unit="steps") as update:
                result = act_warm.run(
                    python,
                    unpacked=Path(unpacked),
                    progress=act_warm.relay(update, run.reporter.note),
                )
        except WarmFailed as exc:
            run.reporter.note(f"[yellow]precompile failed[/]: {exc} (the wheel is left as built)")
            return
        store = Path(unpacked) / "fa_kernels" / "_precompiled"
        added = wheelpatch.add_tree(run.compiled.wheel, store, "fa_kernels/_precompiled")
    data = result.data
    run.reporter.note(
        f"precompile: {data.get('kernels')} Triton kernels and {data.get('launchers', 0)} launchers for "
        f"{data.get('target')} added to the wheel "
        f"({added} files, {result.seconds:.1f} s)"
    )


def into_wheelhouse(run: _Run) -> None:
    assert run.compiled is not None
    wheel, entry = act_build.into_wheelhouse(
        run.plan.build, run.compiled.wheel, run.plan.wheelhouse
    )
    run.outcome = Outcome(
        plan=run.plan,
        wheel=wheel,
        entry=entry,
        reused=run.compiled.reused,
        seconds=time.perf_counter() - run.started,
        log=run.compiled.log,
    )


STEPS = (reuse, compile_wheel, precompile, into_wheelhouse)


def run(plan: Plan, reporter: Reporter | None = None) -> Outcome:
    """Take the steps in order until one of them has the wheel (reuse can end the run early)."""
    if plan.from_snapshot:  # its facts (compiler, torch, GPU) are another machine's
        raise ConfigError(
            "a build plan made from a snapshot (env_file) cannot be built: the compiler, torch and "
            "GPU it names are the snapshot machine's, not this one's",
            fix="show the plan only (fa-dist build --env-file F --plan), or build on the machine "
            "itself without --env-file",
        )
    state = _Run(plan=plan, reporter=reporter or Silent())
    for step in STEPS:
        if state.outcome is not None:
            break
        step(state)
    assert state.outcome is not None
    return state.outcome
