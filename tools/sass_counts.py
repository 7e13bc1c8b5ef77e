"""Instruction counts and the order of the tensor-core and softmax instructions in a kernel's SASS, from
`cuobjdump --dump-sass` output (a file or stdin), one block per function. Used for issue #16 to check
what ptxas made of the sm90 forward's schedules without a GPU:

    cuobjdump --dump-sass flash_fwd_sm90.o | python tools/sass_counts.py [--filter Li128] [--order]

--order prints, per function, the sequence of HGMMA / WARPGROUP.DEPBAR / MUFU.EX2 / named-barrier
instructions with runs collapsed ("MUFU.EX2 x64"), which shows whether a wgmma wait sits before or
after the exponentials.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator

COUNTED = (
    "FFMA",
    "FMUL",
    "FADD",
    "FMNMX",
    "MUFU.EX2",
    "SHFL.BFLY",
    "F2FP",
    "HGMMA",
    "WARPGROUP.DEPBAR",
    "WARPGROUP.ARRIVE",
    "BAR.SYNC",
    "BAR.ARV",
    "SYNCS",
)
ORDERED = ("HGMMA", "WARPGROUP.DEPBAR", "WARPGROUP.ARRIVE", "MUFU.EX2", "BAR.SYNC", "BAR.ARV")
FUNCTION = re.compile(r"Function : (\S+)")
INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


def functions(lines: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """(name, opcodes with modifiers) for each function of the dump."""
    name, ops = "", list[str]()
    for line in lines:
        if match := FUNCTION.search(line):
            if name:
                yield name, ops
            name, ops = match[1], []
        elif name and (match := INSTRUCTION.search(line)):
            ops.append(match[1])
    if name:
        yield name, ops


def family(op: str, names: tuple[str, ...]) -> str | None:
    """The first of `names` that op is or starts with (FFMA.FTZ -> FFMA, BAR.SYNC.DEFER_BLOCKING -> BAR.SYNC)."""
    return next((n for n in names if op == n or op.startswith(n + ".")), None)


def counts(ops: list[str]) -> Counter[str]:
    return Counter(f for op in ops if (f := family(op, COUNTED)))


def order(ops: list[str]) -> list[str]:
    """The ORDERED instructions in program order, runs collapsed: ["HGMMA x8", "WARPGROUP.DEPBAR", ...]."""
    runs: list[tuple[str, int]] = []
    for op in ops:
        if not (f := family(op, ORDERED)):
            continue
        if runs and runs[-1][0] == f:
            runs[-1] = (f, runs[-1][1] + 1)
        else:
            runs.append((f, 1))
    return [f"{f} x{n}" if n > 1 else f for f, n in runs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sass", nargs="?", type=argparse.FileType(), default=sys.stdin)
    parser.add_argument(
        "--filter", default="", help="only functions whose mangled name contains this"
    )
    parser.add_argument(
        "--order", action="store_true", help="also print the collapsed instruction order"
    )
    args = parser.parse_args()
    for name, ops in functions(args.sass):
        if args.filter not in name:
            continue
        c = counts(ops)
        print(name)
        print("  total", len(ops), " ".join(f"{k}={c.get(k, 0)}" for k in COUNTED))
        if args.order:
            print("  order:", " | ".join(order(ops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
