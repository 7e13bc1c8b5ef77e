"""The warm pipeline behind `fa-dist warm`: precompile the installed fa_kernels' Triton kernels for the
target's GPU and Triton (act/warm.py), with a progress bar over the cases."""

from __future__ import annotations

import re
from collections.abc import Callable

from fa_dist.act import warm as act_warm
from fa_dist.facts import target as target_mod
from fa_dist.options import WarmOptions
from fa_dist.reporter import Progress, Reporter, Silent

PROGRESS = re.compile(r"warm: (\d+)/(\d+) (.*)")


def progress_of(line: str) -> tuple[int, int, str] | None:
    """("warm: 12/60 attention bfloat16 d64") -> (12, 60, "attention bfloat16 d64")."""
    match = PROGRESS.match(line)
    return (int(match[1]), int(match[2]), match[3]) if match else None


def relay(update: Progress, reporter: Reporter) -> Callable[[str], None]:
    """Feed fa_kernels.warm's progress lines to a bar; a failed case also gets a line of its own."""

    def each(line: str) -> None:
        parsed = progress_of(line)
        if parsed is None:
            return
        done, total, label = parsed
        update(done, total)
        if "FAILED" in label:
            reporter.note(f"  [yellow]{label}[/]")

    return each


def run(options: WarmOptions, reporter: Reporter | None = None) -> act_warm.WarmResult:
    reporter = reporter or Silent()
    python = target_mod.resolve_python(options.target.python)
    reporter.step(f"precompiling fa_kernels' Triton kernels in {python}")
    with reporter.progress("precompile", unit="steps") as update:
        result = act_warm.run(
            python,
            jobs=options.jobs,
            if_missing=options.if_missing,
            progress=relay(update, reporter),
        )
    data = result.data
    if "skipped" in data:
        reporter.step(f"nothing to do: {data['skipped']}")
    else:
        reporter.step(
            f"stored {data['kernels']} kernels for triton {data['triton']} on {data['target']} "
            f"({data['cases']} cases, {result.seconds:.1f} s)"
        )
    return result
