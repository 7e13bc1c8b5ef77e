"""Rendering: rich tables for people, a stable JSON shape for machines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fa_dist import codec, compat
from fa_dist.checks import Finding, Severity, Verdict
from fa_dist.environment import Environment, PackageInfo, Tool
from fa_dist.variant import Variant

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


def print_matrix(console: Console, expansion: Any) -> None:
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
