"""Measure fa_kernels' triton and cuda backends on one representative shape per shape class
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

def _norm_times(shape: Any, name: str, rep: int) -> tuple[float | None, float | None]:
    import torch

    import fa_kernels
    from timing import measure

    x, r = (torch.randn(shape.rows, shape.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for _ in range(2))
    w = torch.randn(shape.hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    p = 0.1 if shape.dropout else 0.0

    def run() -> Any:
        return fa_kernels.rms_norm_fn(x, w, None, residual=r, dropout_p=p, prenorm=True, eps=1e-6, backend=name)

    return (measure(run, (x, r, w), "fwd", graphs=False, rep=rep).ms,
            measure(run, (x, r, w), "bwd", graphs=False, rep=rep).ms)


def _attention_times(shape: Any, name: str, rep: int) -> tuple[float | None, float | None]:
    import torch

    import fa_kernels
    from timing import measure

    batch, nheads = max(1, 16384 // shape.seqlen), max(1, 2048 // shape.head_dim)
    q, k, v = (torch.randn(batch, shape.seqlen, nheads, shape.head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))

    def run() -> Any:
        return fa_kernels.flash_attn_func(q, k, v, causal=shape.causal, backend=name)

    fwd = measure(run, (q, k, v), "fwd", graphs=False, rep=rep).ms
    bwd = measure(run, (q, k, v), "bwd", graphs=False, rep=rep).ms
    return fwd, (fwd + bwd if fwd is not None and bwd is not None else None)  # a training call


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
    """-> (choices, evidence) for this GPU: key -> backend, key -> 'triton X ms, cuda Y ms'."""
    from fa_kernels import auto

    choices, evidence = {}, {}
    for op in ops:
        for shape in auto.representatives(op):
            times = {name: (_norm_times if op == "norm" else _attention_times)(shape, name, rep)
                     for name in _supported(op, shape)}
            for i, direction in enumerate(auto.DIRECTIONS):
                ms = {n: t[i] for n, t in times.items() if t[i] is not None}
                if not ms:
                    continue
                k = auto.key(op, direction, shape)
                choices[k] = min(ms, key=lambda n: ms[n])
                evidence[k] = f"{shape}: " + ", ".join(f"{n} {v:.4f} ms" for n, v in sorted(ms.items()))
                print(f"{k}: {choices[k]} ({evidence[k]})", flush=True)
    return choices, evidence


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
