"""Compile fa_kernels' Triton kernels ahead of time for this GPU and this Triton: the cases a first call
would compile, run once each on tiny inputs in worker processes that share a private Triton cache,
whose entries then become a group of fa_kernels.precompiled's store.

    python -m fa_kernels.warm [--jobs N] [--head-dims 64 128] [--json]
    python -m fa_kernels.warm status [--json]

Progress: one "warm: i/n case" line a finished case, on stderr; the result on stdout (--json: one line).
--if-missing: nothing to do when the store already has this Triton and GPU (e.g. the wheel shipped it).
Exit status: 0 done (or nothing missing), 1 some case failed (the rest is stored), 2 cannot here (no GPU,
no triton, the interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fa_kernels import precompiled

DTYPES = ("bfloat16", "float16")
HEAD_DIMS = (64, 128)
NORM_HIDDEN = (2048, 4096, 8192)
# the norm calls people make (and fa-dist's smoke test makes): residual (prenorm), none, dropout in
# training, the dropout mask returned (p=0 and p>0), and mixed precision (float32 weight, residual kept
# in float32); each is its own set of constexprs, so its own compile
NORM_VARIANTS = ("prenorm", "plain", "dropout", "mask", "dropout-mask", "mixed")


@dataclass(frozen=True)
class Case:
    """One call whose kernels get compiled: op "attention" (flash_attn_func), "varlen"
    (flash_attn_varlen_func), "decode" (flash_attn_with_kvcache, one new token), "norm" (rms_norm_fn
    on the Triton backend), forward and, where there is one, backward; or "smoke" (fa_kernels.smoke's
    quick set)."""

    op: str
    dtype: str
    head_dim: int = 0
    causal: bool = False
    variant: str = ""  # decode: "split", "whole", "paged"; norm: one of NORM_VARIANTS
    hidden: int = 0

    @property
    def label(self) -> str:
        if self.op == "smoke":
            return "smoke --quick"
        shape = f"d{self.head_dim}" if self.head_dim else f"n{self.hidden}"
        extra = " causal" if self.causal else ""
        return f"{self.op} {self.dtype} {shape}{extra}{' ' + self.variant if self.variant else ''}"


def cases(head_dims: tuple[int, ...] = HEAD_DIMS) -> list[Case]:
    """The common calls: both half dtypes, the given head dims, causal or not; decoding with the keys
    split across CTAs and not, and paged; the Triton norm at common hidden sizes, with and without a
    residual. Sizes, head counts and sequence lengths do not multiply this list: the kernels do not
    specialise on them (attention_kernels._SCALARS)."""
    out = []
    for dtype in DTYPES:
        for d in head_dims:
            for causal in (False, True):
                out += [Case("attention", dtype, d, causal), Case("varlen", dtype, d, causal)]
            out += [Case("decode", dtype, d, True, v) for v in ("split", "whole", "paged")]
        out += [Case("norm", dtype, variant=v, hidden=n) for n in NORM_HIDDEN for v in NORM_VARIANTS]
    # the quick smoke test fa-dist install runs, whole: whatever kernel or launcher it needs beyond the
    # cases above (an H200 install built one launcher without it) is then stored too
    return [*out, Case("smoke", "bfloat16")]


def run_case(case: Case) -> None:
    import torch

    dt = getattr(torch, case.dtype)
    if case.op == "smoke":
        from fa_kernels import smoke

        smoke.run(quick=True)  # compiled is compiled: a failing case is the install's to report, not warm's
    elif case.op == "norm":
        _norm(case, dt)
    elif case.op == "decode":
        _decode(case, dt)
    else:
        _attention(case, dt)
    torch.cuda.synchronize()


def _norm(case: Case, dt: Any) -> None:
    import torch

    import fa_kernels

    v = case.variant
    x = torch.randn(64, case.hidden, device="cuda", dtype=dt, requires_grad=True)
    w = torch.ones(case.hidden, device="cuda", dtype=torch.float32 if v == "mixed" else dt, requires_grad=True)
    res = None if v == "plain" else torch.randn_like(x, requires_grad=True)
    out = fa_kernels.rms_norm_fn(x, w, None, residual=res, prenorm=res is not None, backend="triton",
                                 dropout_p=0.1 if "dropout" in v else 0.0, residual_in_fp32=v == "mixed",
                                 return_dropout_mask="mask" in v)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None and o.is_floating_point()]
    outs = [o for o in outs if o.requires_grad]
    torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])


def _attention(case: Case, dt: Any) -> None:
    import torch

    import fa_kernels

    q = torch.randn(2, 80, 4, case.head_dim, device="cuda", dtype=dt, requires_grad=True)
    k, v = (torch.randn(2, 80, 2, case.head_dim, device="cuda", dtype=dt, requires_grad=True) for _ in "kv")
    if case.op == "attention":
        out = fa_kernels.flash_attn_func(q, k, v, causal=case.causal, backend="triton")
    else:
        cu = torch.tensor([0, 80, 160], dtype=torch.int32, device="cuda")
        out = fa_kernels.flash_attn_varlen_func(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu, cu, 80, 80,
                                                causal=case.causal, backend="triton")
    out.sum().backward()


def _decode(case: Case, dt: Any) -> None:
    import torch

    import fa_kernels

    d, pages = case.head_dim, case.variant == "paged"
    cache_shape = (8, 256, 2, d) if pages else (2, 1024, 2, d)
    kc, vc = (torch.zeros(cache_shape, device="cuda", dtype=dt) for _ in "kv")
    q = torch.randn(2, 1, 16, d, device="cuda", dtype=dt)
    k, v = (torch.randn(2, 1, 2, d, device="cuda", dtype=dt) for _ in "kv")
    lens = torch.tensor([700, 900], dtype=torch.int32, device="cuda")
    table = torch.arange(8, dtype=torch.int32, device="cuda").view(2, 4) if pages else None
    splits = 1 if case.variant == "whole" else 4
    fa_kernels.flash_attn_with_kvcache(q, kc, vc, k, v, cache_seqlens=lens, block_table=table, causal=True,
                                       num_splits=splits, backend="triton")


def _worker(indices: list[int], head_dims: tuple[int, ...]) -> int:
    todo = cases(head_dims)
    failed = 0
    for i in indices:
        try:
            run_case(todo[i])
            print(f"case-done {i}", flush=True)
        except Exception as exc:  # reported per case, the other cases go on
            print(f"case-failed {i} {type(exc).__name__}: {str(exc)[:300]}".replace("\n", " "), flush=True)
            failed += 1
    return 1 if failed else 0


def warm(jobs: int, head_dims: tuple[int, ...], store: Path, seed: bool, record: bool) -> dict[str, Any]:
    """Compile every case in ``jobs`` worker processes into a private cache, store the result as this
    (Triton, GPU) group, point Triton's cache at it (``seed``) and the package's RECORD (``record``)."""
    import triton

    import fa_kernels

    started = time.perf_counter()
    target = precompiled.visible_targets()[0]
    todo = cases(head_dims)
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fa-kernels-warm-") as cache:
        failed = _run_workers(todo, jobs, head_dims, Path(cache))
        done = [c.label for i, c in enumerate(todo) if i not in failed]
        group = precompiled.write_group(store, Path(cache), triton.__version__, target, fa_kernels.__version__, done)
    seeded = 0
    cache_dir = precompiled.triton_cache_dir()
    if seed and cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        seeded = precompiled.seed(group, cache_dir)
    recorded = precompiled.record_store(store) if record else False
    return {"group": group.name, "store": str(store), "triton": triton.__version__, "target": target,
            "kernels": len(group.entries), "launchers": len(group.modules), "cases": len(todo), "failed": {todo[i].label: why for i, why in failed.items()},
            "seeded": seeded, "recorded": recorded, "seconds": round(time.perf_counter() - started, 2)}


def _run_workers(todo: list[Case], jobs: int, head_dims: tuple[int, ...], cache: Path) -> dict[int, str]:
    """Run the cases in ``jobs`` processes (round robin) sharing ``cache``; print progress; -> the
    failed cases' indices with why."""
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache), precompiled.ENV_SWITCH: "0"}
    dims = ",".join(map(str, head_dims))
    isolated = ["-I"] if sys.flags.isolated else []  # workers see the sys.path this process saw
    procs = [subprocess.Popen([sys.executable, *isolated, "-m", "fa_kernels.warm", "_worker", "--head-dims", dims,
                               "--cases", ",".join(map(str, range(j, len(todo), jobs)))],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for j in range(min(jobs, len(todo)))]
    failed: dict[int, str] = {}
    reported: set[int] = set()
    for proc in procs:  # each worker's lines in turn; the others run meanwhile
        assert proc.stdout is not None
        tail = ""
        for line in proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind not in ("case-done", "case-failed"):
                tail = line.strip() or tail
                continue
            index, _, why = rest.partition(" ")
            reported.add(int(index))
            if kind == "case-failed":
                failed[int(index)] = why
            print(f"warm: {len(reported)}/{len(todo)} {todo[int(index)].label}{' FAILED: ' + why if why else ''}",
                  file=sys.stderr, flush=True)
        if proc.wait() not in (0, 1):  # 1: some case failed, said above; anything else: it died
            for i in set(range(procs.index(proc), len(todo), jobs)) - reported:
                failed[i] = f"its worker exited with {proc.returncode} before reaching it: {tail[:200]}"
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fa_kernels.warm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="warm", choices=("warm", "status", "_worker"))
    parser.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--head-dims", default=",".join(map(str, HEAD_DIMS)))
    parser.add_argument("--cases", default="")
    parser.add_argument("--store", type=Path, default=None, help="default: $FA_KERNELS_PRECOMPILED_DIR, else the package's")
    parser.add_argument("--no-seed", action="store_true", help="leave Triton's cache as it is")
    parser.add_argument("--no-record", action="store_true", help="do not list the files in the package's RECORD")
    parser.add_argument("--if-missing", action="store_true", help="skip when this Triton and GPU are stored")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    head_dims = tuple(int(d) for d in args.head_dims.split(",") if d)
    args.store = args.store or precompiled.store_dir()
    if args.action == "_worker":
        return _worker([int(i) for i in args.cases.split(",") if i], head_dims)
    if args.action == "status":
        return _print(status(args.store), args.json)
    why = _cannot_warm()
    if why:
        _print({"error": why}, args.json)
        return 2
    if args.if_missing and (have := status(args.store)["matching"]):
        return _print({"skipped": f"precompiled already: {', '.join(have)}", "matching": have}, args.json)
    result = warm(max(1, args.jobs), head_dims, args.store, not args.no_seed, not args.no_record)
    _print(result, args.json)
    return 1 if result["failed"] else 0


def status(store: Path) -> dict[str, Any]:
    try:
        import triton

        version: str | None = triton.__version__
    except ImportError:
        version = None
    targets = precompiled.visible_targets()
    return {**precompiled.describe(precompiled.read_groups(store), version, targets), "store": str(store),
            "triton_cache": str(precompiled.triton_cache_dir())}


def _cannot_warm() -> str:
    import torch

    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "TRITON_INTERPRET=1: the interpreter compiles nothing"
    if not torch.cuda.is_available():
        return "no GPU visible to torch: precompiling needs the GPU the kernels will run on"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed: there is nothing to precompile"
    return ""


def _print(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
