#!/usr/bin/env bash
# Issue #13: where a decoding step's time goes under CUDA-graph replay (benchmarks/profile_decode.py),
# then bench_decode.py. Runs the checkout's kernels (Triton only, nothing to build). About 3 minutes.
#   OUT=/path/to/logs bash tools/gpu_issue13p.sh       -> $OUT/profile_decode.log, bench_decode.log
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export PYTHONPATH="$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR=$WORK/triton-cache
cd benchmarks || exit 1
step timeout 240 $PY profile_decode.py ${PROFILE_ARGS:-} 2>&1 | tee "$OUT/profile_decode.log"
[ -n "${SKIP_BENCH:-}" ] || step timeout 240 $PY bench_decode.py ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_decode.log"
