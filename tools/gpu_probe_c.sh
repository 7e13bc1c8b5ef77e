#!/usr/bin/env bash
# Issue #17: the Triton norm backward's launch shapes at 16384x4096 by kernel time, beside upstream
# flash_attn (carry .bench_deps). Runs the checkout's Triton kernels. Under a minute on an H200.
#   OUT=/path/to/logs bash tools/gpu_probe_c.sh   -> $OUT/sweep_norm_bwd.log
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export PYTHONPATH="$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR=$WORK/triton-cache
cd benchmarks || exit 1
step timeout 100 $PY sweep_norm.py 16384x4096 ${OPTIONS:-2,8,2,2 1,8,2,1 1,8,1,1 2,8,2,1 1,4,2,1 2,16,2,1 4,8,2,1 1,16,2,2} \
    2>&1 | tee "$OUT/sweep_norm_bwd.log"
