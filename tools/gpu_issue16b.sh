#!/usr/bin/env bash
# Issue #16 after tools/gpu_issue16.sh (same machine: its unpacked build in $SITE, default /tmp/i16-site):
# the auto table's attention rows measured again (benchmarks/sweep_auto.py --ops attention, with the
# ping-pong forward now the compiled default), the table put into that build, and bench_attention's forward
# and forward+backward at hd 64/128, 4k-16k with `auto` using it. About 4 minutes on an H200.
#   OUT=/path/to/logs bash tools/gpu_issue16b.sh   -> sweep.log, auto_table.py, bench.log, attention.md
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
SITE=${SITE:-/tmp/i16-site}
ls "$SITE"/fa_kernels/_C*.so >/dev/null || { echo "no build in $SITE: run tools/gpu_issue16.sh first"; exit 1; }
export PYTHONPATH="$SITE" TRITON_CACHE_DIR=$WORK/triton-cache
step env OUT="$OUT" timeout 130 $PY benchmarks/sweep_auto.py --ops attention --rep "${REP:-20}" 2>&1 | tee "$OUT/sweep.log"
[ -s "$OUT/auto_table.py" ] && cp "$OUT/auto_table.py" "$SITE/fa_kernels/auto_table.py"
(cd benchmarks && step env OUT="$OUT" timeout 120 $PY bench_attention.py --seqlens 4096 8192 16384 \
    --only auto cuda triton sdpa_cudnn --no-first-call --no-graphs --rep 30) 2>&1 | tee "$OUT/bench.log"
