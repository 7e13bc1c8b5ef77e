#!/usr/bin/env bash
# Issue #13 on a GPU machine: sweep the KV-cache kernel's tile configs and split targets under CUDA-graph
# replay (benchmarks/sweep_decode.py, about 3 minutes on an H200), to set decode.config/CTAS_PER_SM.
# Logs under $OUT: sweep_decode.log.
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export PYTHONPATH="$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}"
(cd benchmarks && step timeout 280 $PY sweep_decode.py) > "$OUT/sweep_decode.log" 2>&1
cat "$OUT/sweep_decode.log"
