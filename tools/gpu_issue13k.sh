#!/usr/bin/env bash
# Issue 13 part 1 on a GPU machine: the GPU tests of flash_attn_with_kvcache, paged varlen, attention
# sinks, rotary and bert_padding, then the decode benchmark (bench_decode.py, under 3 minutes on an H200).
# Run from the repository root with fa_kernels importable from the checkout:
#   OUT=/path/to/logs bash tools/gpu_issue13k.sh            (about 5 minutes)
#   SWEEP=1 OUT=... bash tools/gpu_issue13k.sh              (adds sweep_decode.py, about 3 minutes more)
# Writes under $OUT (or ./out): env.txt, gpu_tests_issue13k.log, bench_decode.log, decode.md, decode.json
# (and sweep_decode.log).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/kernels${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
{
  nvidia-smi -L
  $PY -c "import sys, torch, triton, fa_kernels; print(sys.version.split()[0], torch.__version__, triton.__version__, fa_kernels.__file__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

timeout 240 $PY -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_kvcache.py \
  tests/kernels/test_padding_rotary.py 2>&1 | tee "$OUT/gpu_tests_issue13k.log"
tests_rc=${PIPESTATUS[0]}

timeout 200 $PY benchmarks/bench_decode.py 2>&1 | tee "$OUT/bench_decode.log"
bench_rc=${PIPESTATUS[0]}

if [ "${SWEEP:-0}" = 1 ]; then
  (cd benchmarks && timeout 240 $PY sweep_decode.py) 2>&1 | tee "$OUT/sweep_decode.log"
fi

echo "gpu tests exit=$tests_rc, bench_decode exit=$bench_rc" | tee -a "$OUT/env.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
