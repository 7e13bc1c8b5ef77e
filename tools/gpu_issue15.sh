#!/usr/bin/env bash
# Issue #15 on a GPU machine (image: python3 3.12, torch 2.11, triton 3.6), about 5 minutes:
#   1. fa-dist build --arch native: compiles, then precompiles the Triton kernels into the wheel
#   2. fa-dist install of that wheel into a fresh venv (empty Triton cache), timed: precompile skipped
#      (the wheel brought it), smoke fast
#   3. benchmarks/bench_cold_start.py: first calls (JIT / precompiled / warm, checksums), import torch,
#      doctor first and repeated, install from the local wheel into another fresh venv
#   4. fa-dist warm on an install without the store (removed by hand), doctor's precompiled-kernels line
#   (SKIP_WARM=1 stops after 3)
#   5. (SPEED=1) bench_attention at seqlen 4096 (the kernels no longer specialise on sizes)
# Logs under $OUT: build.log, install.log, cold.log (+ cold_start.md/.json), warm.log (5-6 files).
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export FA_DIST_CACHE_DIR=$WORK/fa-dist-cache TRITON_CACHE_DIR=$WORK/triton-cache

{
    nvidia-smi -L; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    step $PY -m fa_dist build --arch native --wheelhouse "$WORK/wh"
    ls -la "$WORK/wh"
    $PY - "$WORK"/wh/*.whl <<'PYEOF'  # the image has no unzip
import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if "_precompiled/" in n]
print(f"precompiled files in the wheel: {len(names)}")
manifest = next((n for n in names if n.endswith("manifest.json")), None)
print(zipfile.ZipFile(sys.argv[1]).read(manifest).decode()[:600] if manifest else "no manifest")
PYEOF
} > "$OUT/build.log" 2>&1
tail -5 "$OUT/build.log"

ENV_PY=$(newenv "$WORK/env")
{
    step $PY -m fa_dist install --python "$ENV_PY" --wheelhouse "$WORK/wh" --no-build
    step $PY -m fa_dist doctor --python "$ENV_PY"
} > "$OUT/install.log" 2>&1
grep -E "precompile|smoke: passed|total_seconds|precompiled-kernels|^wall" "$OUT/install.log"

{   # where an install's seconds go: the target probe's torch import and device query (a facts-cache
    # miss), and the smoke test's process, profiled, with an empty Triton cache seeded from the store
    step $PY -m fa_dist --debug detect --python "$ENV_PY" --refresh 2>&1 >/dev/null | grep -E "probe|timings"
    (cd "$WORK" && TRITON_CACHE_DIR=$WORK/profile-cache step "$ENV_PY" -X importtime -m cProfile -s cumtime -m fa_kernels.smoke --quick --json \
        2> "$WORK/importtime.txt" | grep -v '^{' | head -70)
    sort -t'|' -k2 -n -r "$WORK/importtime.txt" | head -25
    find "$WORK/profile-cache" -name "*.so" | head -3; echo "launchers linked: $(find "$WORK/profile-cache" -type l -name "*.so" | wc -l), built: $(find "$WORK/profile-cache" -type f -name "*.so" | wc -l)"
} > "$OUT/install_profile.log" 2>&1
grep -E "torch probe timings|probe torch|launchers linked|^wall" "$OUT/install_profile.log"

rm -rf "$TRITON_CACHE_DIR"
(cd benchmarks && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" OUT="$OUT" timeout 300 $PY bench_cold_start.py --python "$ENV_PY" --fa-dist "$PY -m fa_dist" \
    --wheelhouse "$WORK/wh" --fresh-env-cmd "$(declare -f newenv); TORCH_SITE=$TORCH_SITE PY=$PY newenv \$1/v") \
    > "$OUT/cold.log" 2>&1
echo "cold start exit=$?"; tail -22 "$OUT/cold.log"

[ -n "${SKIP_WARM:-}" ] && exit 0  # SKIP_WARM=1: the warm section is measured already
{
    SITE=$("$ENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf "$SITE/fa_kernels/_precompiled" "$TRITON_CACHE_DIR"
    step $PY -m fa_dist doctor --python "$ENV_PY"
    step $PY -m fa_dist warm --python "$ENV_PY"
    step $PY -m fa_dist warm --python "$ENV_PY" --if-missing
    step $PY -m fa_dist doctor --python "$ENV_PY"
    grep -c "_precompiled/" "$SITE"/fa_kernels-*.dist-info/RECORD
    if [ "${SPEED:-0}" = 1 ]; then
        (cd "$ROOT/benchmarks" && PYTHONPATH="$ROOT/kernels" timeout 150 $PY bench_attention.py --seqlens 4096 --no-first-call)
    fi
} > "$OUT/warm.log" 2>&1
grep -E "precompile|stored|nothing to do|precompiled-kernels|^wall|exit=" "$OUT/warm.log"
