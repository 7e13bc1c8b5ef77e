#!/usr/bin/env bash
# Issue #17 on a GPU machine (image: python3 3.12, torch 2.11.0+cu130, triton 3.6.0, nvcc 13.0):
#   1. build fa_kernels for this GPU (fa-dist build --arch native; fa-dist picks /usr/bin/g++ itself,
#      the image's CXX links libstdc++ statically) and install the wheel into a venv that sees the
#      image's torch through a .pth file; run the GPU tests this issue added (split directions, the
#      auto table, dx/dresidual one tensor) and the norm GPU tests;
#   2. benchmarks/sweep_auto.py: both backends on every shape class, writes $OUT/auto_table.py (copy it
#      over kernels/fa_kernels/auto_table.py to commit it); the installed package then reads it, so
#      the benchmarks below measure `auto` with the fresh table;
#   3. bench_norm.py and bench_attention.py with the one timing harness (benchmarks/timing.py).
# Upstream flash_attn's Triton norm is measured when .bench_deps/ is carried (see bench_norm.py).
# Usage, from the repo root: OUT=/some/dir bash tools/gpu_issue17.sh        (about 6 minutes on an H200)
# Logs under $OUT (6 files): setup.log, sweep.log, auto_table.py, bench.log, norm.md, attention.md.
# REP=ms per do_bench (default 50); SEQLENS="..." for the attention table (default 1024 4096 16384).
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
REP=${REP:-50}
SEQLENS=${SEQLENS:-1024 4096 16384}

{
    echo "torch site: $TORCH_SITE; CC=${CC:-} CXX=${CXX:-}"; nvidia-smi -L; nvcc --version | tail -2
    $PY -m venv --without-pip "$WORK/env" || exit 1
    SITE=$("$WORK/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$TORCH_SITE" > "$SITE/image-torch.pth"
    step $PY -m fa_dist build --arch native --wheelhouse "$WORK/wh" --clean --no-precompile
    $PY -m pip install -q --no-deps --target "$SITE" "$WORK"/wh/*.whl
    "$WORK/env/bin/python" -c "import fa_kernels, fa_kernels.backend as b, torch
print(fa_kernels.__file__, b.available(), b.device_arch(0))"
    # the venv's fa_kernels (the installed wheel) must win over the checkout's kernels/ folder
    cd "$WORK" && step "$WORK/env/bin/python" -m pytest -p no:cacheprovider -q -x --rootdir "$ROOT" \
        -c "$ROOT/pyproject.toml" "$ROOT/tests/kernels/test_auto.py" "$ROOT/tests/kernels/test_norm.py" \
        "$ROOT/tests/kernels/test_mixed_precision.py"
    cd "$ROOT"
} 2>&1 | tee "$OUT/setup.log"
SITE=$("$WORK/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

[ -n "${SKIP_SWEEP:-}" ] || {
    step env OUT="$OUT" "$WORK/env/bin/python" benchmarks/sweep_auto.py --rep "$REP" ${SWEEP_ARGS:-}
    if [ -s "$OUT/auto_table.py" ]; then
        cp "$OUT/auto_table.py" "$SITE/fa_kernels/auto_table.py"
        echo "installed the measured table into $SITE/fa_kernels/auto_table.py"
        git diff --no-index --stat "$ROOT/kernels/fa_kernels/auto_table.py" "$OUT/auto_table.py"
    fi
} 2>&1 | tee "$OUT/sweep.log"

{
    mkdir -p "$WORK/res"
    step env OUT="$WORK/res" "$WORK/env/bin/python" benchmarks/bench_norm.py --rep "$REP" ${BENCH_ARGS:-}
    # shellcheck disable=SC2086  # the seqlens are separate arguments
    [ -n "${SKIP_ATTN:-}" ] || step env OUT="$WORK/res" "$WORK/env/bin/python" benchmarks/bench_attention.py --rep "$REP" \
        --seqlens $SEQLENS --no-first-call ${BENCH_ARGS:-}
    cp "$WORK/res/norm.md" "$WORK/res/attention.md" "$OUT/" 2>/dev/null
} 2>&1 | tee "$OUT/bench.log"
echo "logs in $OUT"; ls -la "$OUT"
