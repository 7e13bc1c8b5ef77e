"""`fa-dist install`: the visible sequence of steps, with timings, and the choice between a prebuilt
wheel, a build for this GPU, and the pure-Triton fallback."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from fa_dist import build_commands, checks, compat, compat_install, resolve
from fa_dist import install as inst
from fa_dist.environment import Environment
from fa_dist.errors import EnvironmentBroken
from fa_dist.paths import default_wheelhouse
from fa_dist.variant import Variant


def install(
    env: Environment,
    *,
    began: float | None = None,
    wheelhouses: list[Path],
    find_links: list[Path],
    index_urls: list[str],
    offline: bool,
    allow_insecure_http: bool,
    allow_unverified: bool = False,
    smoke_timeout: float | None = None,
    no_build: bool,
    from_source: bool,
    smoke: bool,
    dry_run: bool,
    as_json: bool,
    out: Console,
    err: Console,
    flash_attn_compat: bool = False,
) -> int:
    started = began if began is not None else time.perf_counter()

    def step(text: str) -> None:
        err.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {text}", highlight=False)

    step(f"detect: {_describe(env)}")
    _require_torch(env)
    if flash_attn_compat:
        compat.refuse_over_upstream(env)  # before anything is built or changed
    home = default_wheelhouse()
    folders = wheelhouses or [home]
    candidates = inst.gather(
        folders, find_links, index_urls, offline, allow_insecure_http, allow_unverified
    )
    resolution = resolve.resolve(env, candidates)
    step(f"resolve: {len(candidates)} candidate wheel(s)")
    for line in resolution.lines():
        err.print(f"        {line}", highlight=False)
    choice = resolution.choice
    compiled = (
        choice is not None
        and Variant.from_local_version(str(parse_wheel_filename(choice.filename)[1])) is not None
    )
    if from_source or choice is None or not compiled:
        recipe = _recipe_to_build(env, no_build=no_build, have=choice, step=step)
        if recipe is not None and dry_run:
            plan = build_commands.make_plan(
                env, recipe_name=recipe, arch_request="native", jobs=None
            )
            archs = " ".join(map(str, plan.archs.archs)) if plan.archs else "any GPU"
            what = f"build {plan.recipe.name} {plan.version} for {archs}, then install it"
            what += _compat_plan(plan.version) if flash_attn_compat else ""
            step(f"plan: {what}")
            _print_plan(out, {"plan": what}, resolution, as_json)
            return 0
        if recipe is not None and _build(env, recipe, folders[0], step=step, err=err):
            resolution = resolve.resolve(env, inst.local_candidates(folders[0], "wheelhouse"))
            choice = resolution.choice
    if choice is None:
        raise inst.NoMatchingWheel(
            "no wheel matches this machine:\n  " + "\n  ".join(resolution.lines()),
            fix="fa-dist build (then fa-dist install), or point --wheelhouse/--index-url "
            "at wheels built for this torch",
        )
    kernels_version = str(parse_wheel_filename(choice.filename)[1])
    also = _compat_plan(kernels_version) if flash_attn_compat else ""
    step(f"plan: {choice.filename} from {choice.source}{also}")
    if dry_run:
        _print_plan(
            out, {"plan": choice.filename + also, "source": choice.source}, resolution, as_json
        )
        return 0
    _install_and_report(
        env,
        resolution,
        choice,
        compat_for=kernels_version if flash_attn_compat else None,
        options=inst.Options(
            run_smoke=smoke,
            smoke_timeout=smoke_timeout,
            allow_insecure_http=allow_insecure_http,
            allow_unverified=allow_unverified,
        ),
        started=started,
        step=step,
        out=out,
        err=err,
        as_json=as_json,
    )
    return 0


def _install_and_report(
    env: Environment,
    resolution: resolve.Resolution,
    choice: resolve.Candidate,
    *,
    compat_for: str | None,
    options: inst.Options,
    started: float,
    step: Callable[[str], None],
    out: Console,
    err: Console,
    as_json: bool,
) -> None:
    """Fetch, install, smoke-test and record ``choice`` (and, with ``compat_for``, the flash-attn
    compat for that fa-kernels version in the same transaction), then print the outcome."""
    compat_step = (
        compat_install.CompatStep(env, compat_for, smoke=options.run_smoke, log=step)
        if compat_for
        else None
    )
    with _download_bar(err, choice) as progress:
        outcome = inst.install(
            env,
            resolution,
            log=step,
            progress=progress,
            options=options,
            then=compat_step.run if compat_step else None,
        )
    if outcome.smoke:
        step(
            f"smoke: passed on {outcome.smoke['device']} ({outcome.seconds.get('smoke', 0):.1f} s)"
        )
    result: dict[str, Any] = {
        "installed": outcome.wheel,
        "source": outcome.source,
        "sha256": outcome.sha256
        if outcome.verified
        else f"{outcome.sha256} (computed here: the source gave none to verify)",
        "seconds": {k: round(v, 2) for k, v in outcome.seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 2),
        "smoke_passed": outcome.smoke["passed"] if outcome.smoke else None,
        "record": outcome.record,
    }
    if compat_step is not None and compat_step.outcome is not None:
        assert env.python is not None
        entry = compat_install.record_entry(compat_step.outcome)
        compat_install.write_record(env.python.prefix, entry)
        result["flash_attn_compat"] = entry if as_json else compat_install.summary(entry)
    step(f"record: {outcome.record}")
    _print(out, result, as_json)


def _compat_plan(kernels_version: str) -> str:
    return f", then the flash-attn compat {compat.version_for(kernels_version)} beside it"


@contextlib.contextmanager
def _download_bar(
    err: Console, cand: resolve.Candidate
) -> Iterator[Callable[[int, int], None] | None]:
    """A download progress bar for a remote wheel (none for a local file), fed by fetch's callback."""
    if "://" not in cand.location:
        yield None
        return
    with Progress(
        TextColumn("        fetch"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("fetch", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _describe(env: Environment) -> str:
    torch = env.torch.version if env.torch and env.torch.version else "no torch"
    gpus = ", ".join(sorted({str(g.arch) for g in env.visible_gpus if g.arch})) or "no GPU"
    python = env.python.abi_tag if env.python else "?"
    return f"{python}, torch {torch}, {gpus}"


def _require_torch(env: Environment) -> None:
    """Kernels run through torch: without a working one there is nothing to install, so say how to get it."""
    torch_finding = next(
        (f for f in checks.check_torch(env) if f.severity is checks.Severity.ERROR), None
    )
    if torch_finding is not None:
        raise EnvironmentBroken(
            f"{torch_finding.title}: {torch_finding.evidence}",
            fix=torch_finding.fix or "see fa-dist doctor",
        )


def _recipe_to_build(
    env: Environment, *, no_build: bool, have: resolve.Candidate | None, step: Any
) -> str | None:
    """The recipe to build when no compiled wheel matches: one for this GPU when the toolchain
    allows, else the pure-Triton one; None when nothing should be built (forbidden, or the matching
    pure-Triton wheel is already at hand)."""
    if no_build:
        return None
    verdict = checks.verdict(checks.run_checks(env))
    if not verdict.source_blockers:
        return "auto"
    blockers = ", ".join(verdict.source_blockers)
    if have is not None:
        step(
            f"no compiled wheel matches, and building is blocked by {blockers}: "
            "using the pure-Triton wheel (Triton kernels only)"
        )
        return None
    step(
        f"building from source is blocked by {blockers}: "
        "building the pure-Triton wheel instead (Triton kernels only, no compiled backend)"
    )
    return "triton"


def _build(env: Environment, recipe: str, folder: Path, *, step: Any, err: Console) -> bool:
    """Build `recipe` for this machine into `folder`; False (said in a step) when it cannot."""
    try:
        build_commands.build(
            env,
            recipe_name=recipe,
            arch_request="native",
            jobs=None,
            wheelhouse_dir=folder,
            clean=False,
            plan_only=False,
            as_json=False,
            out=err,
            err=err,
        )
    except EnvironmentBroken as exc:
        step(f"cannot build: {exc.message}")
        return False
    step(f"build: {recipe} wheel in {folder}")
    return True


def _print_plan(
    out: Console, plan: dict[str, Any], resolution: resolve.Resolution, as_json: bool
) -> None:
    """A dry run's answer; JSON adds the resolver's trace (the text form already showed it)."""
    _print(out, {**plan, "trace": resolution.lines()} if as_json else plan, as_json)


def _print(out: Console, data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"[bold]{key}[/]: {value}", highlight=False)
