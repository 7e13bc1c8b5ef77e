#!/usr/bin/env bash
# Issue #14 on a GPU machine (image: python3 3.12, torch 2.11.0+cu130, nvcc 13.0, CC/CXX = /opt/gcc):
#   1. build the stable-ABI wheel with fa-dist build (or take a carried one: STABLE_WHEEL=path.whl), show
#      its tags and the nm -D evidence (no c10/at/torch C++ symbol, only the C shim; no CPython symbol
#      outside the limited API);
#   2. build a wheel for exactly this torch (--abi torch), serve both as an index on 127.0.0.1, and let
#      `fa-dist install` choose (the trace says why the stable-ABI one wins); doctor explains it;
#   3. the CUDA backend's GPU tests and `fa-dist smoke --full` on the installed stable-ABI wheel;
#   4. speed (OLD_SRC=tarball of an ATen-glue kernels/ tree, e.g. `git archive 8975790 kernels`, and
#      OLD_CONFIG=its FA_KERNELS_BUILD_CONFIG, the JSON `fa-dist build` of that commit wrote): that
#      build in a venv of its own and benchmarks/bench_builds.py comparing it with the stable-ABI wheel.
# SKIP_TESTS=1 leaves out step 3's pytest run (smoke --full still runs).
# Environments are venvs that see the image's torch through a .pth file (torch is never changed).
# Usage, from the repo root: OUT=/some/dir bash tools/gpu_issue14.sh      (about 5 minutes on an H200)
# Logs under $OUT: build.log, symbols.log, install.log, tests.log, smoke.log, speed.log (6 files).
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
install_wheel() { $PY -m pip install -q --no-deps --target "$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" "$2"; }

# 1. the stable-ABI wheel ----------------------------------------------------------------------------
{
    echo "torch site: $TORCH_SITE; CC=${CC:-} CXX=${CXX:-}"; nvidia-smi -L; nvcc --version | tail -2
    mkdir -p "$WORK/wh"
    if [ -n "${STABLE_WHEEL:-}" ]; then
        echo "carried stable-ABI wheel: $STABLE_WHEEL"
        cp "$STABLE_WHEEL" "$WORK/wh/" && PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} $PY tools/ci/manifest_from_wheels.py "$WORK/wh"
    else
        step $PY -m fa_dist build --abi stable --arch native --wheelhouse "$WORK/wh" --clean
    fi
    if [ -n "${WITH_TORCH_WHEEL:-}" ]; then  # the per-torch wheel beside it (45 s more): the index then offers both
        step $PY -m fa_dist build --abi torch --arch native --wheelhouse "$WORK/wh" --clean
    fi
    ls -la "$WORK/wh"
} 2>&1 | tee "$OUT/build.log"
STABLE=$(ls "$WORK"/wh/*stableabi*.whl | head -1)
SPECIFIC=$(ls "$WORK"/wh/*cxx11abi*.whl | head -1)

{
    for whl in $STABLE $SPECIFIC; do
        echo "================ $(basename "$whl")"
        rm -rf "$WORK/x" && mkdir -p "$WORK/x" && (cd "$WORK/x" && $PY -m zipfile -e "$whl" .)
        grep '^Tag:' "$WORK"/x/*.dist-info/WHEEL; cat "$WORK/x/fa_kernels/_build_info.json"
        SO=$(ls "$WORK"/x/fa_kernels/_C*.so); ls -la "$SO"
        echo "-- undefined c10/at/torch C++ symbols (must be 0):"
        nm -D --undefined-only "$SO" | c++filt | grep -cE " (c10|at|torch)::"
        echo "-- undefined CPython symbols (limited API only: PyModule_Create2):"
        nm -D --undefined-only "$SO" | awk '{print $2}' | grep -E '^_?Py' | tr '\n' ' '; echo
        echo "-- torch C shim symbols it calls:"
        nm -D --undefined-only "$SO" | awk '{print $2}' | grep -E '^(aoti_torch|torch)_' | tr '\n' ' '; echo
        readelf -d "$SO" | grep NEEDED
    done
} 2>&1 | tee "$OUT/symbols.log"

# 2. install from an index on 127.0.0.1: the stable-ABI wheel beats the one built for this torch ----------
{
    newenv "$WORK/env" || exit 1
    step $PY -m fa_dist index build "$WORK/wh" --out "$WORK/site"
    $PY -m http.server --bind 127.0.0.1 8766 --directory "$WORK/site" >/dev/null 2>&1 &
    server=$!
    sleep 1
    mkdir -p "$WORK/none"
    export FA_DIST_CACHE_DIR=$WORK/cache
    step $PY -m fa_dist install --python "$WORK/env/bin/python" --wheelhouse "$WORK/none" \
        --index-url http://127.0.0.1:8766/ --dry-run
    step $PY -m fa_dist install --python "$WORK/env/bin/python" --wheelhouse "$WORK/none" \
        --index-url http://127.0.0.1:8766/ --no-build
    kill "$server"
    step $PY -m fa_dist doctor --python "$WORK/env/bin/python" -v
    "$WORK/env/bin/python" -c "import fa_kernels, fa_kernels.backend as b; print(fa_kernels.__file__, b.available())"
} 2>&1 | tee "$OUT/install.log"

# 3. GPU tests of the CUDA backend and the full smoke test, on the installed stable-ABI wheel ------------
[ -n "${SKIP_TESTS:-}" ] || {
    # the venv's fa_kernels (the installed wheel) must win over the checkout's kernels/ folder
    cd "$WORK" && step "$WORK/env/bin/python" -m pytest -p no:cacheprovider -q -m gpu -k cuda \
        --rootdir "$ROOT" -c "$ROOT/pyproject.toml" "$ROOT/tests/kernels"
    cd "$ROOT"
} 2>&1 | tee "$OUT/tests.log"
step $PY -m fa_dist smoke --python "$WORK/env/bin/python" --full 2>&1 | tee "$OUT/smoke.log"

# 4. speed: stable-ABI glue vs the ATen glue (same kernels), same shapes, same run -------------------------
if [ -n "${OLD_SRC:-}" ]; then
    {
        newenv "$WORK/old" && mkdir -p "$WORK/oldsrc" && tar -xzf "$OLD_SRC" -C "$WORK/oldsrc"
        # the shared-libstdc++ compiler, as fa-dist picks (the image's CXX links libstdc++ statically: #10)
        step env CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" FA_KERNELS_BUILD_CONFIG="$OLD_CONFIG" $PY -m pip install -q \
            --no-deps --no-build-isolation --target "$("$WORK/old/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
            "$WORK/oldsrc/kernels"
        "$WORK/old/bin/python" -c "import fa_kernels, fa_kernels.backend as b; print(fa_kernels.__version__, b.available())"
        step $PY benchmarks/bench_builds.py --compare "stable-abi wheel=$WORK/env/bin/python" \
            "ATen glue=$WORK/old/bin/python"
    } 2>&1 | tee "$OUT/speed.log"
fi
echo "logs in $OUT"; ls -la "$OUT"
