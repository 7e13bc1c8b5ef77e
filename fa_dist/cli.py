"""The fa-dist command line: a thin layer over detect -> decide -> act."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from fa_dist import __version__, checks, codec, report
from fa_dist.detect import detect
from fa_dist.environment import Environment
from fa_dist.errors import ConfigError, FaDistError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)


def target_options(func: F) -> F:
    """--python and --env-file: which environment a command looks at."""
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


def load_environment(python: str | None, env_file: Path | None) -> Environment:
    if env_file is not None:
        if python:
            raise ConfigError(
                "--python and --env-file exclude each other",
                fix="drop one: a snapshot already names its interpreter",
            )
        return Environment.load(env_file)
    target = _resolve_python(python)
    with err.status(f"detecting the environment of {target}", spinner="dots"):
        return detect(target)


def _resolve_python(python: str | None) -> str:
    if not python:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.access(found, os.X_OK) or Path(found).is_dir():
        raise ConfigError(
            f"--python {python}: no such executable",
            fix="pass the path of the target environment's python, e.g. .venv/bin/python",
        )
    return found


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
def detect_cmd(python: str | None, env_file: Path | None, output: Path | None) -> int:
    """Print the machine's facts as a JSON snapshot (the input of every decision).

    A snapshot taken on one machine can be replayed anywhere with --env-file.
    """
    env = load_environment(python, env_file)
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
def doctor(
    python: str | None, env_file: Path | None, as_json: bool, strict: bool, verbose: bool
) -> int:
    """Diagnose the environment: what works, what is broken, and the exact fix for each.

    Exit codes: 0 nothing is an error (with --strict: nor a warning), 3 something is,
    2 bad input, 4 the target interpreter could not be probed.
    """
    env = load_environment(python, env_file)
    findings = checks.run_checks(env)
    verdict = checks.verdict(findings, strict=strict)
    from fa_dist import sources
    from fa_dist.install import COMPAT_KEY, read_record
    from fa_dist.paths import default_wheelhouse

    record = read_record(env.python.prefix) if env.python and env_file is None else None
    # this fa-dist's own facts (not the target's): what `fa-dist build` builds from, where wheels go
    own: dict[str, Any] = {
        "kernel_source": sources.describe(),
        "wheelhouse": str(default_wheelhouse()),
    }
    if as_json:
        click.echo(
            json.dumps(
                {**report.doctor_json(env, findings, verdict), "install_record": record, **own},
                indent=2,
            )
        )
    else:
        report.print_doctor(out, env, findings, verdict, verbose=verbose)
        if env_file is None:  # a snapshot is about another machine: the report stays about it
            out.print(report.own_facts_text(**own), highlight=False, soft_wrap=True)
        if record:
            smoke = record.get("smoke") or {}
            out.print(
                f"last fa-dist install: {record['wheel']} from {record['source']} at "
                f"{record['installed_at']}, sha256 {record['sha256'][:12]}..., smoke "
                f"{'passed' if smoke.get('passed') else 'not run'}",
                highlight=False,
            )
        if record and record.get(COMPAT_KEY):
            from fa_dist.compat_install import summary

            out.print(f"flash-attn compat: {summary(record[COMPAT_KEY])}", highlight=False)
    return verdict.exit_code


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
@click.option("--plan", "plan_only", is_flag=True, help="Print the build plan and stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or plan) as JSON.")
def build(
    python: str | None,
    env_file: Path | None,
    recipe: str,
    arch_request: str,
    jobs: int | None,
    wheelhouse: Path | None,
    clean: bool,
    ptx: str | None,
    abi: str,
    write_config: Path | None,
    plan_only: bool,
    as_json: bool,
) -> int:
    """Build the kernel package into a wheel for the target interpreter, tagged with its variant.

    Compiles with torch's ninja build (no build isolation) for exactly the detected GPU unless --arch
    says otherwise, refusing early when doctor knows the build cannot work. A second build of the same
    sources reuses the finished wheel, or ninja's objects after a change. Exit 5 when compilation fails
    (the cause and the relevant log lines are shown).
    """
    from fa_dist import build_commands

    env = load_environment(python, env_file)
    return build_commands.build(
        env,
        recipe_name=recipe,
        arch_request=arch_request,
        jobs=jobs,
        wheelhouse_dir=wheelhouse,
        clean=clean,
        ptx=ptx,
        abi=abi,
        write_config=write_config,
        plan_only=plan_only or env_file is not None,
        as_json=as_json,
        out=out,
        err=err,
    )


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
    from fa_dist import smoke as smoke_mod

    result = smoke_mod.run(
        _resolve_python(python),
        quick=not full,
        timeout=timeout,
        progress=None if as_json else lambda line: err.print(f"[dim]{line}[/]", highlight=False),
    )
    if as_json:
        click.echo(json.dumps({**result.data, "seconds": round(result.seconds, 2)}))
    else:
        smoke_mod.report(out, result)
    return 0 if result.passed else smoke_mod.SmokeFailed.exit_code


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
    dry_run: bool,
    flash_attn_compat: bool,
    as_json: bool,
) -> int:
    """Install kernels that match this machine, verify them on the device, roll back on failure.

    A matching prebuilt wheel (sha256-verified) if one exists, else a build for this GPU, else the
    pure-Triton wheel; pip runs with --no-deps, so torch and triton are never changed. Exit codes:
    7 no matching wheel, 8 the install or smoke test failed (the previous state is restored).
    """
    from fa_dist import install_commands

    began = time.perf_counter()
    env = load_environment(python, env_file)
    return install_commands.install(
        env,
        began=began,
        wheelhouses=list(wheelhouses),
        find_links=list(find_links),
        index_urls=list(index_urls),
        offline=offline,
        allow_insecure_http=allow_insecure_http,
        allow_unverified=allow_unverified,
        smoke_timeout=smoke_timeout,
        no_build=no_build,
        from_source=from_source,
        smoke=not no_smoke,
        dry_run=dry_run or env_file is not None,
        as_json=as_json,
        out=out,
        err=err,
        flash_attn_compat=flash_attn_compat,
    )


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
    from fa_dist import compat_install

    def step(text: str) -> None:
        err.print(text, highlight=False)

    removed = compat_install.uninstall(_resolve_python(python), compat_only=compat_only, log=step)
    out.print(f"[bold]removed[/]: {', '.join(removed) or 'nothing (none was installed)'}")
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
    from fa_dist import matrix as matrix_mod
    from fa_dist import recipes as recipes_mod

    data = matrix_mod.load(path)
    known = recipes_mod.load_all()
    matrix_mod.check_against_recipes(data, {name: r.archs for name, r in known.items()})
    expansion = matrix_mod.expand(data, matrix_mod.parse_only(only))
    cells = [codec.encode(c) for c in expansion.cells]
    if fmt == "github":
        click.echo(json.dumps({"include": cells}))
    elif fmt == "json":
        click.echo(
            json.dumps(
                {
                    "cells": cells,
                    "pruned": expansion.pruned,
                    "pure_triton_wheel": expansion.pure_triton_wheel,
                },
                indent=2,
            )
        )
    else:
        report.print_matrix(out, expansion)
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
    from fa_dist import index as index_mod
    from fa_dist.paths import default_wheelhouse

    groups = index_mod.build(wheelhouse_dir or default_wheelhouse(), site)
    if as_json:
        click.echo(json.dumps(groups, indent=2))
    else:
        for name, files in groups.items():
            out.print(f"[bold]{site / name}/[/]  {len(files)} wheel(s)", highlight=False)
            for f in files:
                out.print(f"    {f}", highlight=False)
    return 0


@index.command("check")
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
def index_check(site: Path) -> int:
    """Verify every file's sha256 against the manifest and every link of every page. Exit 1 on problems."""
    from fa_dist import index as index_mod

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
