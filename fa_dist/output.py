"""Every rendering fa-dist does: rich tables and step lines for people (on standard error while work
runs, colour only on a terminal), and one JSON writer for machines, whose shapes docs/ documents."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from fa_dist.act.compat_install import summary as compat_summary
from fa_dist.act.record import COMPAT_KEY
from fa_dist.act.smoke import SmokeResult
from fa_dist.decide import stable_abi
from fa_dist.decide.attention import Choice
from fa_dist.decide.checks import Finding, Severity, Verdict
from fa_dist.decide.matrix import Expansion
from fa_dist.model import codec, compat
from fa_dist.model.environment import Environment, PackageInfo, Tool
from fa_dist.model.variant import Variant
from fa_dist.reporter import Progress as ProgressCallback

if TYPE_CHECKING:  # types only: no import at run time, so no layer
    from fa_dist.pipelines import build as build_pipeline
    from fa_dist.pipelines import install as install_pipeline
    from fa_dist.pipelines.doctor import Report

STYLE = {
    Severity.OK: "green",
    Severity.INFO: "cyan",
    Severity.WARNING: "yellow",
    Severity.ERROR: "bold red",
}
DOCTOR_JSON_VERSION = 1


def facts_table(env: Environment) -> Table:
    table = Table(
        title="Environment", show_header=False, title_justify="left", box=None, padding=(0, 2)
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in facts(env):
        table.add_row(label, value)
    return table


def facts(env: Environment) -> list[tuple[str, str]]:
    """(label, value) rows; an unknown fact shows why it is unknown."""

    def unknown(key: str) -> str:
        return f"unknown: {env.unknown[key]}" if key in env.unknown else "not found"

    rows: list[tuple[str, str]] = []
    py = env.python
    if py:
        rows.append(
            (
                "python",
                f"{py.version} {py.implementation} ({py.abi_tag}, {py.platform}) "
                f"{py.executable}" + (" [venv]" if py.in_venv else ""),
            )
        )
        rows.append(("glibc", py.glibc or "none (not glibc)"))
    rows.append(("os", f"{env.os.system} {env.os.release} {env.os.machine}"))
    rows.append(("torch", _torch_row(env)))
    rows.append(("triton", env.triton_version or "not installed"))
    for pkg in env.packages:
        rows.append(
            (pkg.name, f"{pkg.version} (import: {pkg.import_status.value}){_provides(pkg)}")
        )
    for pkg in env.neighbours:
        pin = f", requires {pkg.requires_torch}" if pkg.requires_torch else ""
        rows.append((pkg.name, f"{pkg.version} (import: {pkg.import_status.value}{pin})"))
    driver = env.driver
    rows.append(
        (
            "nvidia driver",
            f"{driver.version}, CUDA <= {driver.cuda or '?'} (via {driver.source})"
            if driver
            else unknown("driver"),
        )
    )
    gpus = env.visible_gpus or (driver.gpus if driver else ())
    for gpu in gpus:
        mem = f", {gpu.memory_mib / 1024:.0f} GiB" if gpu.memory_mib else ""
        rows.append((f"gpu {gpu.index}", f"{gpu.name} ({gpu.arch or '?'}{mem})"))
    if env.rocm or "rocm" not in env.unknown:
        rows.append(
            ("rocm", f"{env.rocm.version} {' '.join(env.rocm.gfx)}" if env.rocm else "none")
        )
    rows += _tool_rows(env, unknown)
    res = env.resources
    mem = (
        f"{res.mem_available_mib / 1024:.1f} of {res.mem_total_mib / 1024:.1f} GiB free"
        if res.mem_total_mib and res.mem_available_mib is not None
        else "unknown"
    )
    rows.append(("cpus / ram", f"{res.cpus} / {mem}"))
    disk = ", ".join(f"{k} {v / 1024:.0f} GiB" for k, v in sorted(res.disk_free_mib.items()))
    rows.append(("disk free", disk or "unknown"))
    for key, value in sorted(env.env_vars.items()):
        rows.append((f"${key}", value if len(value) < 80 else value[:77] + "..."))
    return rows


def _tool_rows(env: Environment, unknown: Callable[[str], str]) -> list[tuple[str, str]]:
    rows = []
    for label, tool in (
        ("nvcc", env.nvcc),
        ("hipcc", env.hipcc),
        ("gcc", env.gcc),
        ("g++", env.gxx),
        ("ninja", env.ninja),
    ):
        if tool is None and label == "hipcc" and env.rocm is None:
            continue
        rows.append((label, _tool_row(tool) if tool else unknown(label.replace("g++", "gxx"))))
    return rows


def _provides(pkg: PackageInfo) -> str:
    """Which flash_attn is active: the upstream package or fa-dist's compat over fa-kernels."""
    if pkg.name != compat.DIST:
        return ""
    if compat.is_compat(pkg):
        made_for = pkg.build_info.get("fa_kernels", "?")
        return f", provides flash_attn: fa-dist's compat over fa-kernels (made for {made_for})"
    return ", provides flash_attn: upstream flash-attn"


def _torch_row(env: Environment) -> str:
    torch = env.torch
    if torch is None or torch.status.value == "missing":
        return "not installed"
    if torch.status.value == "broken":
        return f"BROKEN: {(torch.error or '').splitlines()[0][:120]}"
    build = (
        f"CUDA {torch.cuda}" if torch.cuda else (f"HIP {torch.hip}" if torch.hip else "CPU-only")
    )
    gpu = f"{len(torch.devices)} GPU(s)" if torch.cuda_available else "no GPU available"
    return f"{torch.version} ({build}, cxx11abi={torch.cxx11_abi}, {gpu})"


def _tool_row(tool: Tool) -> str:
    state = "" if tool.ok else f" BROKEN: {tool.error}"
    return (
        f"{tool.version or '?'} {tool.path}"
        + (f" (via {tool.source})" if tool.source not in ("PATH",) else "")
        + state
    )


def findings_table(findings: list[Finding], *, verbose: bool) -> Table:
    table = Table(title="Findings", title_justify="left", show_lines=True, expand=True)
    table.add_column("", width=7)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("finding", ratio=1)
    for f in findings:
        if f.severity is Severity.OK and not verbose:
            continue
        body = Text(f.title, style="bold")
        body.append(f"\nseen: {f.evidence}")
        if f.why:
            body.append(f"\nwhy:  {f.why}")
        if f.fix:
            body.append("\nfix:  ", style="bold")
            body.append(f.fix, style="bold cyan")
        table.add_row(Text(f.severity.value, style=STYLE[f.severity]), f.id, body)
    return table


def print_doctor(
    console: Console, env: Environment, findings: list[Finding], verdict: Verdict, *, verbose: bool
) -> None:
    console.print(facts_table(env))
    console.print()
    shown = [f for f in findings if verbose or f.severity is not Severity.OK]
    if shown:
        console.print(findings_table(findings, verbose=verbose))
    passed = sum(f.severity is Severity.OK for f in findings)
    if not verbose and passed:
        console.print(f"[green]{passed} checks passed[/] (--verbose lists them)")
    style = "bold red" if verdict.exit_code else "bold green"
    console.print(Text("verdict: ", style="bold") + Text(verdict.summary, style=style))


def doctor_json(env: Environment, findings: list[Finding], verdict: Verdict) -> dict[str, Any]:
    """The documented shape of ``fa-dist doctor --json`` (docs/doctor.md)."""
    return {
        "version": DOCTOR_JSON_VERSION,
        "verdict": {
            "summary": verdict.summary,
            "exit_code": verdict.exit_code,
            "prebuilt_blockers": list(verdict.prebuilt_blockers),
            "source_blockers": list(verdict.source_blockers),
        },
        "findings": [
            {**codec.encode(f), "blocks": sorted(r.value for r in f.blocks)} for f in findings
        ],
        "environment": env.to_json(),
    }


def print_matrix(console: Console, expansion: Expansion) -> None:
    table = Table(title="Wheel matrix", title_justify="left")
    for col in ("cell", "built on", "serves torch", "serves runtime", "archs", "runner"):
        table.add_column(col, overflow="fold")
    for cell in expansion.cells:
        runtime = "CUDA" if cell.runtime.startswith("cu") else "ROCm"
        target = Variant.parse(cell.variant).torch
        serves = f">= {target}: {cell.torches}" if cell.abi == "stable" else cell.torch
        table.add_row(
            cell.id,
            f"torch {cell.torch}, Python {cell.python}",
            serves,
            f"{runtime} {', '.join(cell.runtimes.split())}",
            cell.archs,
            cell.runner,
        )
    console.print(table)
    extra = 1 if expansion.pure_triton_wheel else 0
    console.print(
        f"[bold]{len(expansion.cells)} compiled wheels[/] (cp310-abi3; one per torch x Python x "
        f"runtime x platform would be {expansion.uncollapsed}) + {extra} pure-Triton wheel "
        f"= {len(expansion.cells) + extra} wheels",
        highlight=False,
    )
    for reason, count in sorted(expansion.pruned.items()):
        console.print(f"  pruned {count}: {reason}", highlight=False)


def own_facts_text(*, kernel_source: dict[str, Any], wheelhouse: str) -> str:
    """Doctor's lines about fa-dist itself: where `fa-dist build` takes the kernels from, where
    wheels go."""
    kind = kernel_source["kind"]
    if kind == "checkout":
        what = f"the checkout's {kernel_source['path']}"
    elif kind == "bundle":
        what = (
            f"bundled fa-kernels {kernel_source['version']} ({kernel_source['path']}, "
            f"sha256 {kernel_source['sha256'][:12]}... verified)"
        )
    else:
        what = f"[bold red]none[/]: {kernel_source['problem']}"
    return f"kernel sources: {what}\nwheelhouse: {wheelhouse}"


def smoke_table(result: SmokeResult) -> Table:
    data = result.data
    t = Table(
        title=f"Smoke test: fa_kernels {data['fa_kernels']} on {data['device']} "
        f"({result.seconds:.1f} s)",
        title_justify="left",
    )
    for col in ("", "op", "backend", "case", "max rel err", "tolerance", "speed"):
        t.add_column(col)
    for case in data["cases"]:
        mark = "[green]pass[/]" if case["passed"] else "[bold red]FAIL[/]"
        err = f"{case['max_err']:.2e}" if case["max_err"] == case["max_err"] else "-"
        t.add_row(
            mark,
            case["op"],
            case["backend"],
            case["shape"] + (f"\n{case['error']}" if case["error"] else ""),
            err,
            f"{case['tolerance']:.0e}",
            case["speed"],
        )
    return t


def print_smoke(console: Console, result: SmokeResult) -> None:
    console.print(smoke_table(result))
    verdict = (
        "[bold green]smoke test passed[/]" if result.passed else "[bold red]smoke test FAILED[/]"
    )
    console.print(f"{verdict} (backends here: {', '.join(result.data['backends'])})")


def write_json(data: Any, *, indent: int | None = 2) -> None:
    """The one JSON writer: standard output, one document."""
    click.echo(json.dumps(data, indent=indent))


class ConsoleReporter:
    """Reports a pipeline's steps to a console: timed step lines, detail lines, progress bars."""

    def __init__(self, console: Console, started: float | None = None) -> None:
        self.console = console
        self.started = time.perf_counter() if started is None else started

    def step(self, text: str) -> None:
        self.console.print(f"[dim]{self.elapsed():6.1f}s[/] {text}", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)

    @contextlib.contextmanager
    def progress(self, label: str, *, unit: str) -> Iterator[ProgressCallback]:
        columns = (
            (TextColumn(f"        {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            if unit == "bytes"
            else (
                TextColumn(f"[bold]{label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(label, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            yield update

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def print_doctor_report(console: Console, report: Report, *, verbose: bool) -> None:
    print_doctor(console, report.env, list(report.findings), report.verdict, verbose=verbose)
    if not report.from_snapshot:
        own = own_facts_text(kernel_source=report.kernel_source, wheelhouse=report.wheelhouse)
        console.print(own, highlight=False, soft_wrap=True)
    record = report.install_record
    if record:
        smoke = record.get("smoke") or {}
        console.print(
            f"last fa-dist install: {record['wheel']} from {record['source']} at "
            f"{record['installed_at']}, sha256 {record['sha256'][:12]}..., smoke "
            f"{'passed' if smoke.get('passed') else 'not run'}",
            highlight=False,
        )
    if record and record.get(COMPAT_KEY):
        console.print(f"flash-attn compat: {compat_summary(record[COMPAT_KEY])}", highlight=False)
    if report.attention is not None:
        console.print(attention_table(report.attention))


def attention_table(found: tuple[Choice, ...]) -> Table:
    """`doctor --attention`: what each consumer runs here; "-" where it runs nothing (the why says)."""
    table = Table(
        title="Attention: what each consumer runs here", title_justify="left", expand=True
    )
    table.add_column("consumer", no_wrap=True)
    table.add_column("runs")
    table.add_column("why")
    for choice in found:
        runs = Text(choice.runs) if choice.runs else Text("-", style="red")
        table.add_row(choice.consumer, runs, choice.why)
    return table


def doctor_report_json(report: Report) -> dict[str, Any]:
    data = doctor_json(report.env, list(report.findings), report.verdict)
    extra = {} if report.attention is None else {"attention": codec.encode(list(report.attention))}
    return {
        **data,
        "install_record": report.install_record,
        "kernel_source": report.kernel_source,
        "wheelhouse": report.wheelhouse,
        **extra,
    }


def build_plan_json(plan: build_pipeline.Plan) -> dict[str, Any]:
    """The documented shape of ``fa-dist build --plan --json`` (docs/build.md)."""
    build = plan.build
    return {
        "recipe": build.recipe.name,
        "kind": build.recipe.kind.value,
        "python": build.python,
        "python_tag": build.python_tag,
        "version": build.version,
        "variant": str(build.variant) if build.variant else None,
        "abi": build.abi.value if build.abi else None,
        "serves": stable_abi.serves(build.variant) if build.variant else "any torch (pure Triton)",
        "archs": [str(a) for a in build.archs.archs] if build.archs else [],
        "ptx": str(build.archs.ptx) if build.archs and build.archs.ptx else None,
        "max_jobs": build.jobs.max_jobs if build.jobs else None,
        "nvcc_threads": build.jobs.nvcc_threads if build.jobs else None,
        "jobs_reason": build.jobs.reason if build.jobs else None,
        "build_env": build.build_env,
        "source_digest": build.source_digest,
        "notes": list(build.notes),
    }


def build_outcome_json(outcome: build_pipeline.Outcome) -> dict[str, Any]:
    """The documented shape of ``fa-dist build --json`` (docs/build.md)."""
    data: dict[str, Any] = {
        "wheel": str(outcome.wheel),
        "reused": outcome.reused,
        "seconds": round(outcome.seconds, 1),
    }
    if outcome.reused != "wheel":
        data["log"] = str(outcome.log) if outcome.log else None
    return {**data, "entry": codec.encode(outcome.entry), "plan": build_plan_json(outcome.plan)}


def print_keyed_table(console: Console, data: dict[str, Any], *, title: str) -> None:
    """A two-column table of a result, leaving out its nested parts (the JSON has them)."""
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key in ("entry", "plan"):
            continue
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    console.print(table)


def install_outcome_json(outcome: install_pipeline.Outcome, *, as_json: bool) -> dict[str, Any]:
    """The documented shape of ``fa-dist install --json`` (docs/install.md); a dry run's JSON adds
    the resolver's trace (its text form already showed it)."""
    if outcome.would is not None:
        data: dict[str, Any] = {"plan": outcome.would}
        if outcome.source is not None:
            data["source"] = outcome.source
        return {**data, "trace": list(outcome.trace)} if as_json else data
    data = {
        "installed": outcome.wheel,
        "source": outcome.source,
        "sha256": outcome.sha256
        if outcome.verified or as_json
        else f"{outcome.sha256} (computed here: the source gave none to verify)",
        "sha256_verified": outcome.verified,
        "seconds": {k: round(v, 2) for k, v in outcome.seconds.items()},
        "total_seconds": round(outcome.total_seconds, 2),
        "smoke_passed": outcome.smoke["passed"] if outcome.smoke else None,
        "record": outcome.record,
    }
    if outcome.compat is not None:
        data["flash_attn_compat"] = outcome.compat if as_json else compat_summary(outcome.compat)
    return data


def print_keyed_lines(console: Console, data: dict[str, Any]) -> None:
    for key, value in data.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)


def print_index(console: Console, site: Path, groups: dict[str, list[str]]) -> None:
    for name, files in groups.items():
        console.print(f"[bold]{site / name}/[/]  {len(files)} wheel(s)", highlight=False)
        for f in files:
            console.print(f"    {f}", highlight=False)
