#!/usr/bin/env bash
# Issue #16 (and #17's backward sweep) in one short call: build the sm_90a wheel, the sm90 GPU tests with
# ping-pong the default, the auto table's attention rows (sweep_auto.py), bench_attention fwd and
# fwd+bwd (auto, cuda, triton, SDPA cuDNN; hd 64/128, 4k-16k),
# then tools/gpu_probe_c.sh (norm backward launch shapes by kernel time). About 4 minutes on an H200.
#   OUT=/path/to/logs bash tools/gpu_issue16c.sh    -> build.log pytest.log bench.log attention.md c/
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
SITE=${SITE:-/tmp/i16-site}
rm -rf "$SITE"
step timeout 120 $PY -m fa_dist build --arch native --no-precompile --wheelhouse "$WORK/wh" > "$OUT/build.log" 2>&1 || exit 1
$PY -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WORK"/wh/*.whl "$SITE"
(export PYTHONPATH="$SITE"; step timeout 90 $PY -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_cuda_sm90.py \
    > "$OUT/pytest.log" 2>&1); tail -2 "$OUT/pytest.log"
# the auto table's attention rows again (the forward is now ping-pong), into this build, then the bench
(export PYTHONPATH="$SITE"; step env OUT="$OUT" timeout "${SWEEP_LIMIT:-100}" $PY benchmarks/sweep_auto.py \
    --ops attention --rep "${REP:-10}" > "$OUT/sweep.log" 2>&1)
[ -s "$OUT/auto_table.py" ] && cp "$OUT/auto_table.py" "$SITE/fa_kernels/auto_table.py" && echo "auto table installed"
(cd benchmarks && export PYTHONPATH="$SITE" && step env OUT="$OUT" timeout 150 $PY bench_attention.py \
    --seqlens 4096 8192 16384 --only cuda triton sdpa_cudnn ${BENCH_EXTRA:-} --no-first-call --no-graphs \
    --rep 30 > "$OUT/bench.log" 2>&1)
grep -E "^\|" "$OUT/bench.log" | head -40
mkdir -p "$OUT/c"
OUT="$OUT/c" timeout 90 bash tools/gpu_probe_c.sh > "$OUT/c/stdout.log" 2>&1; echo "probe_c exit $?"
