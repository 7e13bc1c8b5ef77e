#!/usr/bin/env bash
# One GPU call: #16's ncu profile of the sm90 forward (PART=ncu: build + ncu), then #17's question whether
# backend="auto" is slower than the same backend by name (benchmarks/norm_order_check.py on that build).
# Usage: bash tools/gpu_batch_c.sh   (logs: $OUT/gpu_issue16.tgz, $OUT/norm_order.log)
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
PART=ncu bash tools/gpu_all.sh tools/gpu_issue16.sh:200
(cd benchmarks && PYTHONPATH=/tmp/i16-site timeout 90 python3 norm_order_check.py) 2>&1 | tee "$OUT/norm_order.log"
(cd benchmarks && PYTHONPATH=/tmp/i16-site timeout 60 python3 norm_order_check.py --p 0.1) 2>&1 | tee -a "$OUT/norm_order.log"
