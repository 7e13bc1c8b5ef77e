"""The warm pipeline behind `fa-dist warm`: precompile the installed fa_kernels' Triton kernels for the
target's GPU and Triton (act/warm.py), with a progress bar over the cases."""

from __future__ import annotations

from fa_dist.act import warm as act_warm
from fa_dist.facts import target as target_mod
from fa_dist.options import WarmOptions
from fa_dist.reporter import Reporter, Silent


def run(options: WarmOptions, reporter: Reporter | None = None) -> act_warm.WarmResult:
    reporter = reporter or Silent()
    python = target_mod.resolve_python(options.target.python)
    reporter.step(f"precompiling fa_kernels' Triton kernels in {python}")
    with reporter.progress("precompile", unit="steps") as update:
        result = act_warm.run(
            python,
            jobs=options.jobs,
            if_missing=options.if_missing,
            progress=act_warm.relay(update, reporter.note),
        )
    data = result.data
    if "skipped" in data:
        reporter.step(f"nothing to do: {data['skipped']}")
    else:
        reporter.step(
            f"stored {data['kernels']} kernels and {data.get('launchers', 0)} launchers for triton "
            f"{data['triton']} on {data['target']} "
            f"({data['cases']} cases, {result.seconds:.1f} s)"
        )
    return result
