"""What backend="auto" runs: the faster of the triton and cuda backends per op, direction and shape
class, looked up in the measured table of auto_table.py (one per GPU arch; benchmarks/sweep_auto.py
measures and writes it).

A shape class is a pure function of the call's shape, coarse enough that one or two representative
shapes per class can be measured (``representatives``):

- norm: hidden size bucket x rows bucket x dropout on/off (dropout changes what the backward writes);
- attention: head dim bucket x key length bucket x causal.

Directions: "forward" and "backward". The norm's two backends save the same state for the backward
(the pre-norm sum in the residual dtype, 1/rms as float32 [rows], the dropout mask regenerated from
the seed by the same Philox counters and threshold), so a norm call may run its forward on one backend
and its backward on the other. Attention does not mix: for attention "backward" names the backend of a
training call (forward and backward on one backend, measured as forward + backward) and "forward" the
backend of a call that needs no gradient.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fa_kernels import auto_table

OPS = ("norm", "attention")
DIRECTIONS = ("forward", "backward")
CHOICES = ("triton", "cuda")

HIDDEN_BOUNDS = (1024, 2048, 4096, 8192)
ROW_BOUNDS = (4096, 32768)  # few rows: launch-bound; many: bandwidth-bound
HEAD_DIM_BOUNDS = (64, 128)
SEQLEN_BOUNDS = (1024, 4096)


@dataclass(frozen=True)
class NormShape:
    rows: int
    hidden: int
    dropout: bool = False


@dataclass(frozen=True)
class AttnShape:
    seqlen: int  # keys a query sees at most (max_seqlen_k)
    head_dim: int
    causal: bool = False


Shape = NormShape | AttnShape


def _size(v: int) -> str:
    return f"{v // 1024}k" if v >= 1024 and v % 1024 == 0 else str(v)


def bucket(value: int, bounds: tuple[int, ...]) -> str:
    """'<=B' for the first bound B >= value, '>LAST' past the last one."""
    for b in bounds:
        if value <= b:
            return f"<={_size(b)}"
    return f">{_size(bounds[-1])}"


def norm_class(shape: NormShape) -> str:
    return (f"hidden{bucket(shape.hidden, HIDDEN_BOUNDS)}/rows{bucket(shape.rows, ROW_BOUNDS)}/"
            f"{'dropout' if shape.dropout else 'p0'}")


def attention_class(shape: AttnShape) -> str:
    return (f"hd{bucket(shape.head_dim, HEAD_DIM_BOUNDS)}/seqlen{bucket(shape.seqlen, SEQLEN_BOUNDS)}/"
            f"{'causal' if shape.causal else 'full'}")


def shape_class(op: str, shape: Shape) -> str:
    if op == "norm" and isinstance(shape, NormShape):
        return norm_class(shape)
    if op == "attention" and isinstance(shape, AttnShape):
        return attention_class(shape)
    raise ValueError(f"op={op!r} with {type(shape).__name__}: norm takes a NormShape, attention an AttnShape")


def key(op: str, direction: str, shape: Shape) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: choose one of {', '.join(DIRECTIONS)}")
    return f"{op}/{direction}/{shape_class(op, shape)}"


def _representative(value_bounds: tuple[int, ...]) -> list[int]:
    """One value per bucket: each bound, and twice the last one for the open bucket."""
    return [*value_bounds, 2 * value_bounds[-1]]


def representatives(op: str) -> list[Shape]:
    """The shapes of ``op`` that benchmarks/sweep_auto.py measures: one or two per class. The norm's
    bandwidth-bound row buckets are measured at both ends (16k and 32k rows, 64k and 128k rows): one
    shape inside a bucket chose the slower backend at its edge (issue #17's 32768x8192 row)."""
    if op == "norm":
        rows = [2048, 16384, 32768, 65536, 131072]
        return [NormShape(r, h, d) for h in _representative(HIDDEN_BOUNDS) for r in rows for d in (False, True)
                if r * h <= 2**30]  # at most 2 GiB a bf16 tensor: 131072 x 16384 is left to its class
    if op == "attention":
        return [AttnShape(s, hd, c) for hd in _representative(HEAD_DIM_BOUNDS)
                for s in _representative(SEQLEN_BOUNDS) for c in (False, True)]
    raise ValueError(f"op={op!r}: choose one of {', '.join(OPS)}")


def arch_name(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"


@functools.lru_cache(maxsize=1024)  # asked on every call: a lookup, not string work, once warm
def choose(op: str, direction: str, shape: Shape, arch: str) -> tuple[str, str]:
    """(backend, reason) from the table, before asking whether that backend is built or can run the call."""
    k = key(op, direction, shape)
    measured = auto_table.TABLE.get(arch)
    if measured is None:
        return auto_table.DEFAULT[op], f"{arch} not measured: the default for {op} ({k})"
    if k not in measured:
        return auto_table.DEFAULT[op], f"{k} not measured on {arch}: the default for {op}"
    return measured[k], f"{arch} table ({auto_table.SOURCES[arch]}): {k}"
