#!/usr/bin/env bash
# One GPU-machine call for several issues' acceptance scripts: each runs with its own $OUT subfolder
# and a time limit, so one hanging script cannot eat the others' time. Usage:
#   bash tools/gpu_all.sh "SCRIPT:SECONDS" ...      e.g. tools/gpu_all.sh tools/gpu_issue10.sh:420
# Logs: $OUT/<script name>.tgz, one archive per script (the device returns at most 8 files), and $OUT/gpu.txt.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # pure-Python wheels the image lacks (see the device README)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
for spec in "$@"; do
    script=${spec%%:*}; limit=${spec##*:}
    name=$(basename "$script" .sh)
    mkdir -p "$OUT/$name"
    start=$(date +%s)
    OUT="$OUT/$name" timeout --signal=INT --kill-after=20 "$limit" bash "$script" > "$OUT/$name/stdout.log" 2>&1
    rc=$?
    echo "== $name: exit $rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
    tail -25 "$OUT/$name/stdout.log"
    tar -czf "$OUT/$name.tgz" -C "$OUT" "$name" && rm -rf "${OUT:?}/$name"
done
