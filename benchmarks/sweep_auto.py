"""Measure fa_kernels' triton and cuda backends on the representative shapes of each shape class
(fa_kernels/auto.py) on this GPU, and write the table backend="auto" reads, in the committed format of
fa_kernels/auto_table.py: to $OUT/auto_table.py (or benchmarks/results/), with this GPU's arch replaced
and every other arch kept. Copy it over kernels/fa_kernels/auto_table.py to commit it.

Timing: benchmarks/timing.py (the benchmarks' one method, without the CUDA-graph column). The norm's
directions are measured apart (they may run on different backends); attention's "backward" entry is
the forward + backward time of a training call (attention does not mix backends).

    python benchmarks/sweep_auto.py [--ops norm attention] [--rep 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HEADER = '''"""The measured table behind backend="auto" (read by fa_kernels/auto.py, whose docstring defines the
shape classes): for each GPU arch, the faster of the triton and cuda backends per op, direction and
shape class; DEFAULT where an arch or a class is not measured.

Written by benchmarks/sweep_auto.py (re-run it on a GPU to regenerate an arch's rows; the others are
kept). EVIDENCE holds the times behind each choice, SOURCES where they were measured.

The norm chooses each direction apart: both backends save the same state for the backward (the
pre-norm sum in the residual dtype, 1/rms as float32 [rows], the dropout mask regenerated from the seed
by the same Philox counters and threshold), so the forward may run on one and the backward on the
other. Attention does not mix: its "backward" entry is the backend of a whole training call (forward
and backward, measured together), its "forward" entry that of a call without gradients.
"""
'''


def _literal(value: Any, indent: str = "") -> str:
    """A dict of str (or of dicts of str) as Python source, one entry a line, keys sorted."""
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python literal, double-quoted as ruff writes them
    inner = indent + "    "
    lines = [f"{inner}{json.dumps(k)}: {_literal(v, inner)}," for k, v in sorted(value.items())]
    return "{\n" + "\n".join(lines) + f"\n{indent}}}" if lines else "{}"


def render(default: dict[str, str], sources: dict[str, str], table: dict[str, dict[str, str]],
           evidence: dict[str, dict[str, str]]) -> str:
    """The text of auto_table.py for these values (sorted, so a regenerated file diffs cleanly)."""
    blocks = [("DEFAULT", "dict[str, str]", default), ("SOURCES", "dict[str, str]", sources),
              ("TABLE", "dict[str, dict[str, str]]", table),
              ("EVIDENCE", "dict[str, dict[str, str]]", evidence)]
    return HEADER + "".join(f"\n{name}: {kind} = {_literal(value)}\n" for name, kind, value in blocks)


def render_module(module: ModuleType) -> str:
    return render(module.DEFAULT, module.SOURCES, module.TABLE, module.EVIDENCE)


# -- measuring (GPU) ------------------------------------------------------------------------------

def _norm_times(shape: Any, names: list[str], rep: int) -> dict[str, tuple[float | None, float | None]]:
    """Every backend's (forward ms, backward ms) on one shape, measured together (timing.measure_all:
    two passes in both orders, so no backend is only ever measured first), as device time
    (Timing.device_ms: the forward's graph replay, the backward's kernel durations)."""
    import torch

    import fa_kernels
    from timing import measure_all

    x, r = (torch.randn(shape.rows, shape.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for _ in range(2))
    w = torch.randn(shape.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    p = 0.1 if shape.dropout else 0.0

    def runner(name: str) -> Any:
        return lambda: fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p, prenorm=True, eps=1e-6,
                                              backend=name)

    impls = {name: runner(name) for name in names}
    fwd = measure_all(impls, (x, r, w), "fwd", graphs=True, rep=rep)
    bwd = measure_all(impls, (x, r, w), "bwd", graphs=False, rep=rep)
    return {name: (_device_or_median(fwd, name), _device_or_median(bwd, name)) for name in names}


def _device_or_median(timings: dict[str, Any], name: str) -> float | None:
    """Device time where every backend has it (a failed capture of one would otherwise weigh its
    median, host time included, against the others' device time), else the median for all."""
    if all(t.graph_ms is not None or t.kernel_ms is not None for t in timings.values()):
        return timings[name].device_ms  # type: ignore[no-any-return]
    return timings[name].ms  # type: ignore[no-any-return]


def _attention_times(shape: Any, names: list[str], rep: int) -> dict[str, tuple[float | None, float | None]]:
    """Every backend's (forward ms, forward + backward ms: a training call) on one shape."""
    import torch

    import fa_kernels
    from timing import measure_all

    batch, nheads = max(1, 16384 // shape.seqlen), max(1, 2048 // shape.head_dim)
    q, k, v = (torch.randn(batch, shape.seqlen, nheads, shape.head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))

    def runner(name: str) -> Any:
        return lambda: fa_kernels.flash_attn_func(q, k, v, causal=shape.causal, backend=name)

    impls = {name: runner(name) for name in names}
    fwd = measure_all(impls, (q, k, v), "fwd", graphs=False, rep=rep)
    bwd = measure_all(impls, (q, k, v), "bwd", graphs=False, rep=rep)
    out: dict[str, tuple[float | None, float | None]] = {}
    for name in names:
        f, b = fwd[name].ms, bwd[name].ms
        out[name] = (f, f + b if f is not None and b is not None else None)
    return out


def _supported(op: str, shape: Any) -> list[str]:
    from fa_kernels import backend

    names = ["triton"]
    if op == "attention":
        from fa_kernels.cuda import attention as cuda_attention

        if cuda_attention.compiled() and shape.head_dim in cuda_attention.HEAD_DIMS:
            names.append("cuda")
    elif backend.cuda_extension() is not None:
        names.append("cuda")
    return names


def sweep(ops: list[str], rep: int) -> tuple[dict[str, str], dict[str, str]]:
    """-> (choices, evidence) for this GPU: key -> backend, key -> the times behind it."""
    from fa_kernels import auto

    runs: dict[str, list[dict[str, float]]] = {}
    notes: dict[str, list[str]] = {}
    for op in ops:
        for shape in auto.representatives(op):
            times = (_norm_times if op == "norm" else _attention_times)(shape, _supported(op, shape), rep)
            for i, direction in enumerate(auto.DIRECTIONS):
                ms = {n: t[i] for n, t in times.items() if t[i] is not None}
                if ms:
                    k = auto.key(op, direction, shape)
                    runs.setdefault(k, []).append(ms)
                    notes.setdefault(k, []).append(
                        f"{shape}: " + ", ".join(f"{n} {v:.4f} ms" for n, v in sorted(ms.items())))
                    print(f"{k}: {notes[k][-1]}", flush=True)
    choices = {}
    for k, measured in runs.items():
        choice = choose(measured)
        if choice is None:
            print(f"{k}: no backend ran on every shape of the class; left to the default", flush=True)
        else:
            choices[k] = choice
    return choices, {k: "; ".join(v) for k, v in notes.items() if k in choices}


def choose(measured: list[dict[str, float]]) -> str | None:
    """The backend of a class measured on several shapes: among those that ran on every shape, the one
    with the lowest sum of its time over each shape's fastest (each shape weighs the same, whatever its
    size); None when no backend ran on all of them."""
    common = set.intersection(*(set(ms) for ms in measured)) if measured else set()
    if not common:
        return None
    return min(sorted(common), key=lambda n: sum(ms[n] / min(ms[m] for m in common) for ms in measured))


def main() -> None:
    import torch

    from fa_kernels import auto, auto_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", nargs="*", default=list(auto.OPS), choices=auto.OPS)
    parser.add_argument("--rep", type=int, default=50, help="do_bench rep (ms) per measurement")
    args = parser.parse_args()
    arch = auto.arch_name(torch.cuda.get_device_capability())
    choices, evidence = sweep(args.ops, args.rep)
    table = {a: dict(t) for a, t in auto_table.TABLE.items()}
    proof = {a: dict(t) for a, t in auto_table.EVIDENCE.items()}
    # the measured ops' rows of this arch are replaced, everything else kept
    table[arch] = {k: v for k, v in table.get(arch, {}).items() if k.split("/")[0] not in args.ops} | choices
    proof[arch] = {k: v for k, v in proof.get(arch, {}).items() if k.split("/")[0] not in args.ops} | evidence
    sources = dict(auto_table.SOURCES)
    sources[arch] = (f"benchmarks/sweep_auto.py on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
                     f"{time.strftime('%Y-%m-%d')}")
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "auto_table.py").write_text(render(auto_table.DEFAULT, sources, table, proof))
    print(f"wrote {out / 'auto_table.py'} ({len(choices)} entries for {arch})")


if __name__ == "__main__":
    sys.exit(main())
