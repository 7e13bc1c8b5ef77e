"""Cold start: what the first call costs in a fresh process, with an empty Triton cache (JIT), with the
precompiled kernels (the same empty cache, seeded from fa_kernels/_precompiled), and with a warm cache;
beside `python -c "import torch"` in the same run as the floor; then `fa-dist doctor` (first and
repeated) and `fa-dist install` from a local wheel into a fresh environment.

    python benchmarks/bench_cold_start.py --python ENV_PYTHON [--wheelhouse W] [--fresh-env-cmd CMD]

ENV_PYTHON has fa_kernels installed (e.g. by `fa-dist install`); every measurement is a new process of
it. Each first-call case prints its outputs' checksum: the precompiled run must equal the JIT one bit
for bit. Prints one markdown table (medians of --repeat runs where cheap); writes results/cold_start.*.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("OUT", Path(__file__).parent / "results"))

# a child: one case's first forward and first forward+backward, timed inside the process
CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
import torch, fa_kernels
t_import = time.perf_counter()
case = sys.argv[1]
torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
if case.startswith("attn"):
    _, d, causal = case.split("-")
    q, k, v = (torch.randn(2, 1024, 16, int(d), device=dev, dtype=dt, requires_grad=True) for _ in range(3))
    run = lambda: fa_kernels.flash_attn_func(q, k, v, causal=causal == "causal")
    leaves = (q, k, v)
else:
    x = torch.randn(4096, 4096, device=dev, dtype=dt, requires_grad=True)
    res = torch.randn_like(x, requires_grad=True)
    w = torch.ones(4096, device=dev, dtype=dt, requires_grad=True)
    mod = fa_kernels.DropoutAddRMSNorm(4096, p=0.0, prenorm=True, residual_in_fp32=False).to(dev, dt)
    run = lambda: mod(x, res)[0]
    leaves = (x, res)
torch.cuda.synchronize()
t0 = time.perf_counter()
out = run()
torch.cuda.synchronize()
t1 = time.perf_counter()
grads = torch.autograd.grad(out.float().square().sum(), leaves)
torch.cuda.synchronize()
t2 = time.perf_counter()
checksum = float(out.double().sum()) + sum(float(g.double().abs().sum()) for g in grads)
print(json.dumps({"import": t_import - t_start, "fwd": t1 - t0, "fwd_bwd": t2 - t0, "checksum": checksum}))
"""

CASES = ["attn-64-causal", "attn-64-full", "attn-128-causal", "attn-128-full", "norm"]


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:4])}...: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def median_wall(argv: list[str], repeat: int) -> float:
    return statistics.median(timed(argv)[0] for _ in range(repeat))


def first_call(python: str, case: str, cache: Path, precompiled: bool) -> dict[str, Any]:
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache), "FA_KERNELS_PRECOMPILED": "1" if precompiled else "0"}
    wall, stdout = timed([python, "-c", CHILD, case], env)
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall": wall}


def first_calls(python: str) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="cold-") as root:
        for case in CASES:
            jit_cache, pre_cache = Path(root, case, "jit"), Path(root, case, "pre")
            jit = first_call(python, case, jit_cache, precompiled=False)
            pre = first_call(python, case, pre_cache, precompiled=True)
            warm = first_call(python, case, jit_cache, precompiled=False)  # what the JIT run left
            rows.append({
                "case": case, "jit fwd+bwd s": jit["fwd_bwd"], "precompiled fwd+bwd s": pre["fwd_bwd"],
                "warm fwd+bwd s": warm["fwd_bwd"], "precompiled - warm s": pre["fwd_bwd"] - warm["fwd_bwd"],
                "jit fwd s": jit["fwd"], "precompiled fwd s": pre["fwd"], "warm fwd s": warm["fwd"],
                "same result": jit["checksum"] == pre["checksum"] == warm["checksum"],
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def fa_dist_times(fa_dist: list[str], python: str, wheelhouse: Path | None, fresh_env: str | None) -> dict[str, float]:
    times = {}
    with tempfile.TemporaryDirectory(prefix="fa-dist-cache-") as cache:
        env = {**os.environ, "FA_DIST_CACHE_DIR": cache}
        for label in ("doctor (first)", "doctor (repeat)", "doctor (repeat 2)"):
            start = time.perf_counter()
            subprocess.run([*fa_dist, "doctor", "--python", python], capture_output=True, env=env, check=False)
            times[label] = time.perf_counter() - start
        if wheelhouse is not None and fresh_env is not None:
            with tempfile.TemporaryDirectory(prefix="fresh-") as folder:
                new_python = subprocess.run(["bash", "-c", fresh_env, "fresh-env", folder], capture_output=True,
                                            text=True, check=True).stdout.strip().splitlines()[-1]
                start = time.perf_counter()
                done = subprocess.run([*fa_dist, "install", "--python", new_python, "--wheelhouse", str(wheelhouse),
                                       "--no-build"], capture_output=True, text=True, env=env, check=False)
                times["install from a local wheel (incl. smoke)"] = time.perf_counter() - start
                print(done.stderr[-2500:], flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True, help="interpreter with fa_kernels installed")
    parser.add_argument("--fa-dist", default=f"{sys.executable} -m fa_dist", help="how to run fa-dist")
    parser.add_argument("--wheelhouse", type=Path, help="a local wheelhouse for the install timing")
    parser.add_argument("--fresh-env-cmd", help="bash command: make an environment in $1, print its python")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    floor = median_wall([args.python, "-c", "import torch"], args.repeat)
    kernels = median_wall([args.python, "-c", "import fa_kernels"], args.repeat)
    rows = first_calls(args.python)
    tools = fa_dist_times(args.fa_dist.split(), args.python, args.wheelhouse, args.fresh_env_cmd)
    report(floor, kernels, rows, tools)


def report(floor: float, kernels: float, rows: list[dict[str, Any]], tools: dict[str, float]) -> None:
    lines = ["# Cold start (fresh processes; bf16; attention b2 s1024 h16; DropoutAddRMSNorm 4096x4096 prenorm)", "",
             "Times in seconds, wall clock inside the new process from just before the first call to the",
             "synchronised end. jit: empty Triton cache, precompiled kernels off; precompiled: an empty cache",
             "seeded from fa_kernels/_precompiled; warm: the cache the JIT run filled. same result: the outputs'",
             "and gradients' checksums are identical across the three.", "",
             f"- `python -c \"import torch\"` (the floor): {floor:.2f} s; `import fa_kernels`: {kernels:.2f} s", ""]
    cols = list(rows[0]) if rows else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    lines += ["", "| fa-dist | seconds | x import torch |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {v / floor:.2f} |" for k, v in tools.items()]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cold_start.md").write_text(text + "\n")
    (RESULTS / "cold_start.json").write_text(json.dumps({"floor": floor, "import_fa_kernels": kernels,
                                                          "first_calls": rows, "fa_dist": tools}, indent=1))


if __name__ == "__main__":
    main()
