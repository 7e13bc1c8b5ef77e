#!/usr/bin/env bash
# Issues #13 and #17, one call: bench_decode.py with the steady (back-to-back steps) columns, and the
# norm forward's launch shapes beside upstream flash_attn (benchmarks/sweep_norm_fwd.py; carry
# .bench_deps for the peer). Runs the checkout's Triton kernels, nothing to build. About 4 minutes.
#   OUT=/path/to/logs bash tools/gpu_probe_b.sh     -> $OUT/bench_decode.log, decode.md, sweep_norm_fwd.log
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export PYTHONPATH="$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR=$WORK/triton-cache
cd benchmarks || exit 1
[ -n "${SKIP_NORM:-}" ] || step timeout 200 $PY sweep_norm_fwd.py --rep 50 2>&1 | tee "$OUT/sweep_norm_fwd.log"
step env OUT="$OUT" timeout 300 $PY bench_decode.py 2>&1 | tee "$OUT/bench_decode.log"
