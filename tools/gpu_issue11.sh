#!/usr/bin/env bash
# Issue #11's acceptance on a GPU machine: fa-dist used as an installed tool, not from the checkout.
#   1. build fa-dist's wheel from this checkout (no build isolation: the image's setuptools/wheel);
#   2. install it with its dependencies into a fresh venv (the image's packages seen through a .pth
#      file; a dependency missing from the image comes from $FA_DIST_WHEELS, default .whl/);
#   3. from another folder (/tmp/...), with a fresh user data/cache dir: doctor (must say: bundle),
#      build (a compiled wheel from the bundled kernel sdist, for this GPU), install (that wheel,
#      smoke-tested on the device), doctor again, matrix --file, index build/check.
# The kernels go into a second fresh venv that sees the image's torch (never changed).
# Usage, from the repo root: OUT=/some/dir bash tools/gpu_issue11.sh
# Logs under $OUT: gpu_issue11.log (everything), bundle.json, doctor.json, build.json, install.json,
# build.log (the compile log of the kernel wheel).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/out}; mkdir -p "$OUT"
WHEELS=${FA_DIST_WHEELS:-$REPO/.whl}
export PYTHONUNBUFFERED=1 TIMEFORMAT='wall %Rs'
PY=$(command -v python3)
WORK=$(mktemp -d /tmp/fa-issue11.XXXXXX)
export XDG_DATA_HOME=$WORK/data XDG_CACHE_HOME=$WORK/cache
unset FA_DIST_WHEELHOUSE FA_DIST_CACHE_DIR
IMAGE_SITE=$($PY -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
FAILED=0

newenv() {  # a bare venv whose python sees the image's packages (torch, click, rich, ...) via a .pth
    $PY -m venv --without-pip "$1" || return 1
    local site; site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$IMAGE_SITE" > "$site/image-site.pth"
}
step() {  # headers and timings on stderr: a step's stdout may be JSON going to a file
    printf '\n================ %s\n' "$*" >&2; time "$@"; local rc=$?; echo "exit=$rc" >&2; return $rc
}
check() {  # check NAME COMMAND...: one PASS/FAIL line for the summary
    if "${@:2}"; then echo "PASS $1"; else echo "FAIL $1"; FAILED=1; fi
}
field() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

{
    echo "python3: $($PY --version) at $PY; image site: $IMAGE_SITE; work: $WORK"
    $PY -m pip --version
    $PY -m pip list 2>/dev/null | grep -iE '^(setuptools|wheel|click|rich|packaging|pyyaml|platformdirs|torch|triton|ninja) '
    echo "CC=${CC:-} CXX=${CXX:-}"

    rm -rf /tmp/fa-issue11-dist
    step $PY -m pip wheel --no-deps --no-build-isolation "$REPO" -w /tmp/fa-issue11-dist || exit 1
    WHL=$(ls /tmp/fa-issue11-dist/fa_dist-*.whl)
    $PY -m zipfile -l "$WHL" | grep _bundle
    $PY -c "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())" \
        "$WHL" fa_dist/_bundle/bundle.json > "$OUT/bundle.json"
    cat "$OUT/bundle.json"

    newenv "$WORK/tool" && newenv "$WORK/target" || exit 1
    if ! "$WORK/tool/bin/python" -c "import platformdirs" 2>/dev/null && ! ls "$WHEELS"/platformdirs-*.whl >/dev/null 2>&1; then
        echo "platformdirs is not in the image and no platformdirs wheel is in $WHEELS:"
        echo "carry one (pip download --no-deps platformdirs -d .whl) and run again"
        exit 1
    fi
    # with its dependencies, resolved offline: the image's packages, plus $WHEELS for what it lacks
    step "$WORK/tool/bin/python" -m pip install --no-index --find-links "$WHEELS" "$WHL" || exit 1
    "$WORK/tool/bin/python" -m pip show fa-dist platformdirs 2>/dev/null | grep -E '^(Name|Version|Location)'
    FA="$WORK/tool/bin/fa-dist"
    T="$WORK/target/bin/python"
    mkdir -p "$WORK/elsewhere" && cd "$WORK/elsewhere" || exit 1
    echo "cwd: $PWD"

    step "$FA" --version
    step "$FA" doctor --python "$T"
    "$FA" doctor --python "$T" --json > "$OUT/doctor.json"
    check "doctor: kernel source is the bundle" \
        test "$(field "$OUT/doctor.json" "d['kernel_source']['kind']")" = bundle
    check "doctor: wheelhouse in the user data dir" \
        test "$(field "$OUT/doctor.json" "d['wheelhouse']")" = "$XDG_DATA_HOME/fa-dist/wheels"

    step "$FA" build --python "$T" --json > "$OUT/build.json"
    cat "$OUT/build.json"
    check "build: a compiled (+cu) wheel from the bundle" \
        grep -q '+cu' <<<"$(field "$OUT/build.json" "d['wheel']")"
    cp "$(field "$OUT/build.json" "d.get('log')")" "$OUT/build.log"

    step "$FA" install --python "$T" --json > "$OUT/install.json"
    cat "$OUT/install.json"
    check "install: the compiled wheel, smoke passed" \
        test "$(field "$OUT/install.json" "'+cu' in d['installed'] and d['smoke_passed']")" = True
    check "kernels imported from the target venv" \
        grep -q "^$WORK/target/" <<<"$("$T" -c 'import fa_kernels; print(fa_kernels.__file__)')"
    step "$FA" doctor --python "$T"
    step "$FA" smoke --python "$T"

    step "$FA" matrix --file "$REPO/matrix.yaml" --format github > "$WORK/cells.json"
    check "matrix --file from another folder" \
        test "$(field "$WORK/cells.json" "len(d['include']) > 0")" = True
    step "$FA" matrix   # no matrix.yaml here: exit 2 with the fix
    step "$FA" index build --out "$WORK/site"
    check "index build + check" "$FA" index check "$WORK/site"
    echo; echo "================ summary"; [ "$FAILED" = 0 ] && echo "ALL PASSED" || echo "SOME FAILED"
} 2>&1 | tee "$OUT/gpu_issue11.log"
