"""The fa-dist command line: parse the flags into an options value (fa_dist/options.py), run the
command's pipeline, and render what it returns (fa_dist/output.py). Nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from fa_dist import output
from fa_dist._version import __version__
from fa_dist.act import index as index_mod
from fa_dist.act import smoke as act_smoke
from fa_dist.decide import matrix as matrix_mod
from fa_dist.decide import recipes as recipes_mod
from fa_dist.errors import FaDistError, SmokeFailed, WarmFailed
from fa_dist.facts import target as target_mod
from fa_dist.model import codec
from fa_dist.model.environment import Environment
from fa_dist.options import (
    BuildOptions,
    DoctorOptions,
    InstallOptions,
    Target,
    UninstallOptions,
    WarmOptions,
)
from fa_dist.paths import default_wheelhouse
from fa_dist.pipelines import build as build_pipeline
from fa_dist.pipelines import doctor as doctor_pipeline
from fa_dist.pipelines import install as install_pipeline
from fa_dist.pipelines import uninstall as uninstall_pipeline
from fa_dist.pipelines import warm as warm_pipeline

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)


def target_options(func: F) -> F:
    """--python, --env-file and --refresh: which environment a command looks at, and how."""
    func = click.option(
        "--refresh",
        is_flag=True,
        help="Import torch in the target again instead of using the cached facts "
        "(docs/doctor.md: the facts cache).",
    )(func)
    func = click.option(
        "--env-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Decide from a saved snapshot (from `fa-dist detect -o F` or `doctor --json`) "
        "instead of looking at this machine.",
    )(func)
    func = click.option(
        "--python",
        "python",
        metavar="PATH",
        help="Target interpreter whose environment is examined and changed "
        "(default: the one running fa-dist).",
    )(func)
    return func


def load_environment(target: Target, *, sdpa: bool = False) -> Environment:
    """The target's environment, with a spinner while the probe runs (seconds)."""
    if target.env_file is not None:
        return target_mod.environment(target)
    python = target_mod.resolve_python(target.python)
    with err.status(f"detecting the environment of {python}", spinner="dots"):
        return target_mod.environment(Target(python=python, refresh=target.refresh), sdpa=sdpa)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="fa-dist")
@click.option("--debug", is_flag=True, help="Show every command run and full tracebacks.")
def cli(debug: bool) -> None:
    """Install FlashAttention-class kernels that match this machine, and prove they work.

    Start with `fa-dist doctor`: it tells what this machine can run and how to fix what it cannot.
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", stream=sys.stderr
    )


@cli.command()
@target_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the snapshot to this file instead of standard output.",
)
def detect_cmd(
    python: str | None, env_file: Path | None, refresh: bool, output: Path | None
) -> int:
    """Print the machine's facts as a JSON snapshot (the input of every decision).

    A snapshot taken on one machine can be replayed anywhere with --env-file.
    """
    env = load_environment(Target(python=python, env_file=env_file, refresh=refresh), sdpa=True)
    text = json.dumps(env.to_json(), indent=2, sort_keys=False)
    if output:
        output.write_text(text + "\n")
        err.print(f"wrote {output}")
    else:
        click.echo(text)
    return 0


detect_cmd.name = "detect"


@cli.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (docs/doctor.md).")
@click.option("--strict", is_flag=True, help="Fail (exit 3) on warnings too, not only on errors.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the checks that passed.")
@click.option(
    "--attention",
    is_flag=True,
    help="Also say which attention each consumer (transformers, torch SDPA, xformers, fa_kernels) "
    "will really run here, and why.",
)
def doctor(
    python: str | None,
    env_file: Path | None,
    refresh: bool,
    as_json: bool,
    strict: bool,
    verbose: bool,
    attention: bool,
) -> int:
    """Diagnose the environment: what works, what is broken, and the exact fix for each.

    Exit codes: 0 nothing is an error (with --strict: nor a warning), 3 something is,
    2 bad input, 4 the target interpreter could not be probed.
    """
    options = DoctorOptions(
        target=Target(python=python, env_file=env_file, refresh=refresh),
        strict=strict,
        attention=attention,
    )
    report = doctor_pipeline.run(load_environment(options.target, sdpa=options.attention), options)
    if as_json:
        output.write_json(output.doctor_report_json(report))
    else:
        output.print_doctor_report(out, report, verbose=verbose)
    return report.verdict.exit_code


@cli.command()
@target_options
@click.option(
    "--recipe",
    default="auto",
    show_default=True,
    help="Which recipe in recipes/ to build: cuda, rocm, triton, or auto (what torch is built for).",
)
@click.option(
    "--arch",
    "arch_request",
    default="native",
    show_default=True,
    help="GPU archs: native (the visible GPUs), all (everything the toolkit can), or sm_80,sm_90.",
)
@click.option("--jobs", type=int, help="Parallel compile jobs (default: from cores and free RAM).")
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the wheel and its manifest entry go (default: $FA_DIST_WHEELHOUSE, else wheels/ "
    "in a checkout, else the user data dir's wheels/; fa-dist doctor shows it).",
)
@click.option(
    "--clean", is_flag=True, help="Forget objects and finished wheels: rebuild everything."
)
@click.option(
    "--ptx", help="Also embed PTX of this arch (one of --arch's), for GPUs newer than the list."
)
@click.option(
    "--abi",
    type=click.Choice(["auto", "stable", "torch"]),
    default="auto",
    show_default=True,
    help="stable: torch's stable ABI, one wheel for every torch >= the recipe's target; torch: a "
    "wheel for this torch only; auto: stable where this torch is at least the target.",
)
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the build config (for a build run by cibuildwheel) and stop.",
)
@click.option(
    "--no-precompile",
    is_flag=True,
    help="Do not put this GPU's compiled Triton kernels into the wheel (done by default when the "
    "wheel is built for the GPUs here and triton is installed).",
)
@click.option("--plan", "plan_only", is_flag=True, help="Print the build plan and stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or plan) as JSON.")
def build(
    python: str | None,
    env_file: Path | None,
    refresh: bool,
    recipe: str,
    arch_request: str,
    jobs: int | None,
    wheelhouse: Path | None,
    clean: bool,
    ptx: str | None,
    abi: str,
    write_config: Path | None,
    no_precompile: bool,
    plan_only: bool,
    as_json: bool,
) -> int:
    """Build the kernel package into a wheel for the target interpreter, tagged with its variant.

    Compiles with torch's ninja build (no build isolation) for exactly the detected GPU unless --arch
    says otherwise, refusing early when doctor knows the build cannot work. A second build of the same
    sources reuses the finished wheel, or ninja's objects after a change. On a machine with the GPU the
    wheel is built for, the Triton kernels are then run once each and what Triton compiled goes into
    the wheel (fa-dist warm), so that installs on such machines load them instead of compiling. Exit 5
    when compilation fails (the cause and the relevant log lines are shown).
    """
    options = BuildOptions(
        target=Target(python=python, env_file=env_file, refresh=refresh),
        recipe=recipe,
        arch=arch_request,
        jobs=jobs,
        wheelhouse=wheelhouse,
        clean=clean,
        ptx=ptx,
        abi=abi,
        precompile=not no_precompile,
    )
    plan = build_pipeline.plan(load_environment(options.target), options)
    if write_config is not None:
        build_pipeline.write_config(plan, write_config)
        output.write_json({"config": str(write_config), "env": plan.build.build_env})
        return 0
    if plan_only or env_file is not None:
        data = output.build_plan_json(plan)
    else:
        data = output.build_outcome_json(build_pipeline.run(plan, output.ConsoleReporter(err)))
    if as_json:
        output.write_json(data)
    else:
        output.print_keyed_table(out, data, title="Build plan" if "wheel" not in data else "Built")
    return 0


@cli.command()
@click.option("--python", "python", metavar="PATH", help="Target interpreter (default: this one).")
@click.option("--full", is_flag=True, help="All cases, not the quick set `install` runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    envvar="FA_DIST_SMOKE_TIMEOUT",
    help="Seconds before the test counts as failed (default 600). Env: FA_DIST_SMOKE_TIMEOUT.",
)
def smoke(python: str | None, full: bool, as_json: bool, timeout: float | None) -> int:
    """Run the installed kernels on this machine against their reference implementations.

    Attention and DropoutAddRMSNorm, forward and backward, every available backend, in a subprocess of
    the target interpreter (a crash is reported, not fatal). Without a GPU: Triton's CPU interpreter at
    tiny sizes. Exit 6 when a case fails or the test cannot run.
    """
    result = act_smoke.run(
        target_mod.resolve_python(python),
        quick=not full,
        timeout=timeout,
        progress=None if as_json else lambda line: err.print(f"[dim]{line}[/]", highlight=False),
    )
    if as_json:
        output.write_json({**result.data, "seconds": round(result.seconds, 2)}, indent=None)
    else:
        output.print_smoke(out, result)
    return 0 if result.passed else SmokeFailed.exit_code


@cli.command()
@target_options
@click.option(
    "--wheelhouse",
    "wheelhouses",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Local wheelhouse (default: the one fa-dist build fills: $FA_DIST_WHEELHOUSE, else "
    "wheels/ in a checkout, else the user data dir's wheels/).",
)
@click.option(
    "--find-links",
    "find_links",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Another folder of wheels.",
)
@click.option(
    "--index-url",
    "index_urls",
    multiple=True,
    envvar="FA_DIST_INDEX_URL",
    help="A static index (URL/manifest.json, as `fa-dist build` writes it). Env: FA_DIST_INDEX_URL.",
)
@click.option("--offline", is_flag=True, envvar="FA_DIST_OFFLINE", help="Use local wheels only.")
@click.option("--allow-insecure-http", is_flag=True, help="Allow plain http to a non-local index.")
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Accept index wheels whose manifest entry has no valid sha256 (refused by default).",
)
@click.option(
    "--smoke-timeout",
    type=click.FloatRange(min=1),
    envvar="FA_DIST_SMOKE_TIMEOUT",
    help="Seconds the smoke test may take before it counts as failed (default 600). "
    "Env: FA_DIST_SMOKE_TIMEOUT.",
)
@click.option("--no-build", is_flag=True, help="Never compile: fail if no wheel matches.")
@click.option("--from-source", is_flag=True, help="Build for this GPU even if a wheel matches.")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke test after installing.")
@click.option(
    "--no-warm",
    is_flag=True,
    help="Do not precompile the Triton kernels for this GPU (first calls then compile them); "
    "on a GPU machine install does it unless the wheel brought them (see fa-dist warm).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the plan and the resolver's trace; change nothing."
)
@click.option(
    "--flash-attn-compat",
    is_flag=True,
    help="Also install fa-dist's flash-attn compat: a generated `flash-attn` distribution whose "
    "flash_attn package maps flash_attn's API onto fa-kernels (refused over a real flash-attn).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def install(
    python: str | None,
    env_file: Path | None,
    refresh: bool,
    wheelhouses: tuple[Path, ...],
    find_links: tuple[Path, ...],
    index_urls: tuple[str, ...],
    offline: bool,
    allow_insecure_http: bool,
    allow_unverified: bool,
    smoke_timeout: float | None,
    no_build: bool,
    from_source: bool,
    no_smoke: bool,
    no_warm: bool,
    dry_run: bool,
    flash_attn_compat: bool,
    as_json: bool,
) -> int:
    """Install kernels that match this machine, verify them on the device, roll back on failure.

    A matching prebuilt wheel (sha256-verified) if one exists, else a build for this GPU, else the
    pure-Triton wheel; pip runs with --no-deps, so torch and triton are never changed. Exit codes:
    7 no matching wheel, 8 the install or smoke test failed (the previous state is restored).
    """
    reporter = output.ConsoleReporter(err)
    options = InstallOptions(
        target=Target(python=python, env_file=env_file, refresh=refresh),
        wheelhouses=wheelhouses,
        find_links=find_links,
        index_urls=index_urls,
        offline=offline,
        allow_insecure_http=allow_insecure_http,
        allow_unverified=allow_unverified,
        smoke_timeout=smoke_timeout,
        no_build=no_build,
        from_source=from_source,
        smoke=not no_smoke,
        warm=not no_warm,
        dry_run=dry_run,
        flash_attn_compat=flash_attn_compat,
    )
    with install_pipeline.standby(options) as ready:  # the smoke test's torch import, meanwhile
        env = load_environment(options.target)
        reporter.step(f"detect: {install_pipeline.describe(env)}")
        outcome = install_pipeline.run(install_pipeline.plan(env, options), reporter, ready)
    data = output.install_outcome_json(outcome, as_json=as_json)
    if as_json:
        output.write_json(data)
    else:
        output.print_keyed_lines(out, data)
    return 0


@cli.command()
@click.option("--python", "python", metavar="PATH", help="Target interpreter (default: this one).")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Compiling processes (default: the cores, at most 16).",
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when the kernels are already precompiled for this Triton and GPU.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def warm(python: str | None, jobs: int | None, if_missing: bool, as_json: bool) -> int:
    """Precompile the installed kernels' Triton code for this GPU and this Triton, so that first calls
    load instead of compiling (seconds each, again in every fresh container).

    Runs the common cases (both half dtypes, head dims 64 and 128, causal or not, varlen, KV-cache
    decoding, the Triton norm) once each on tiny inputs, in parallel processes of the target
    interpreter; stores the result inside the installed package (listed in its RECORD, so pip removes
    it with the package) and points Triton's cache at it. Triton only ever loads an entry under the
    exact key it would compile to: another Triton build or GPU simply compiles as before. Needs the GPU.
    `fa-dist install` does this itself unless --no-warm. Exit 9 when it cannot run or a case failed.
    """
    options = WarmOptions(target=Target(python=python), jobs=jobs, if_missing=if_missing)
    result = warm_pipeline.run(options, output.ConsoleReporter(err))
    data = {**result.data, "seconds": round(result.seconds, 2)}
    if as_json:
        output.write_json(data, indent=None)
    else:
        output.print_keyed_lines(out, {k: v for k, v in data.items() if k not in ("failed",) or v})
    return WarmFailed.exit_code if result.failed else 0


@cli.command()
@click.option("--python", "python", metavar="PATH", help="Target interpreter (default: this one).")
@click.option(
    "--flash-attn-compat",
    "compat_only",
    is_flag=True,
    help="Remove only the flash-attn compat; fa-kernels stays.",
)
def uninstall(python: str | None, compat_only: bool) -> int:
    """Remove what `fa-dist install` put into the environment: fa-kernels, the flash-attn compat and
    the install record; with --flash-attn-compat, only the compat.

    A real (upstream) flash-attn is never touched. torch and triton are never touched.
    """
    options = UninstallOptions(target=Target(python=python), compat_only=compat_only)
    outcome = uninstall_pipeline.run(options, output.ConsoleReporter(err))
    out.print(f"[bold]removed[/]: {', '.join(outcome.removed) or 'nothing (none was installed)'}")
    return 0


@cli.command()
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("matrix.yaml"),
    help="The matrix file (default: matrix.yaml in the current folder).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "github", "json"]),
    default="table",
    show_default=True,
    help="table for people; github: the JSON a workflow's strategy.matrix takes; json: everything.",
)
@click.option(
    "--only",
    help="Keep a slice, e.g. torch=2.11,cuda=13.0 (keys: torch, python, platform, cuda, rocm).",
)
def matrix(path: Path, fmt: str, only: str | None) -> int:
    """Expand matrix.yaml into the wheel-building cells, with why impossible cells were pruned.

    The archs are checked against the recipes `fa-dist build` uses (its checkout's or its bundle's).
    """
    data = matrix_mod.load(path)
    known = recipes_mod.load_all()
    matrix_mod.check_against_recipes(data, {name: r.archs for name, r in known.items()})
    matrix_mod.check_stable_target(data, {name: r.stable_abi_target for name, r in known.items()})
    expansion = matrix_mod.expand(data, matrix_mod.parse_only(only))
    cells = [codec.encode(c) for c in expansion.cells]
    if fmt == "github":
        output.write_json({"include": cells}, indent=None)
    elif fmt == "json":
        output.write_json(
            {
                "cells": cells,
                "pruned": expansion.pruned,
                "pure_triton_wheel": expansion.pure_triton_wheel,
            }
        )
    else:
        output.print_matrix(out, expansion)
    return 0


@cli.group()
def index() -> None:
    """Build or check a static wheel index (PEP 503 pages, per-variant sub-indexes, manifest)."""


@index.command("build")
@click.argument(
    "wheelhouse_dir",
    metavar="[WHEELHOUSE]",
    required=False,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--out",
    "site",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the site into (created; rebuilding is idempotent).",
)
@click.option("--json", "as_json", is_flag=True, help="Print {index: [wheels]} as JSON.")
def index_build(wheelhouse_dir: Path | None, site: Path, as_json: bool) -> int:
    """Write a static index for every wheel in WHEELHOUSE's manifest (hashes verified first).

    WHEELHOUSE defaults to the one `fa-dist build` fills (see `fa-dist build --help`).
    """
    groups = index_mod.build(wheelhouse_dir or default_wheelhouse(), site)
    if as_json:
        output.write_json(groups)
    else:
        output.print_index(out, site, groups)
    return 0


@index.command("check")
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
def index_check(site: Path) -> int:
    """Verify every file's sha256 against the manifest and every link of every page. Exit 1 on problems."""
    problems = index_mod.check(site)
    for p in problems:
        err.print(f"[red]problem[/] {p.where}: {p.what}", highlight=False)
    if not problems:
        out.print(f"[green]ok[/]: {site} (every file hashed, every link resolves)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="fa-dist", standalone_mode=False)
    except FaDistError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        if exc.fix:
            err.print(f"[bold]fix:[/] {exc.fix}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
