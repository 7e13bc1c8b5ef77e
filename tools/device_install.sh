#!/usr/bin/env bash
# `fa-dist install` end to end on a GPU machine (issue #5's acceptance), every step logged under $OUT:
#   A. a fresh environment and an empty wheelhouse: install builds for this GPU, installs, smoke-tests;
#   B. a second fresh environment, pointed at A's wheelhouse served over HTTP on 127.0.0.1 together with
#      a wheel for another torch (WRONG, optional): picks A's wheel, rejects the other with its reason.
# Environments are venvs that see the image's torch through a .pth file (torch is shared, never
# installed or changed); the kernel package goes into each venv's own site-packages.
# Usage: tools/device_install.sh [WRONG_WHEEL_DIR]   (a folder with wheels and their manifest.json)
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TIMEFORMAT='wall %Rs'
PY=$(command -v python3)
WRONG=${1:-}
TORCH_SITE=$($PY -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
WORK=$(mktemp -d)

newenv() {  # a bare venv whose python sees the image's torch and nothing of fa-kernels
    $PY -m venv --without-pip "$1" || return 1
    local site; site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$TORCH_SITE" > "$site/image-torch.pth"
}
step() { echo; echo "================ $*"; time "$@"; echo "exit=$?"; }

{
    newenv "$WORK/envA" && newenv "$WORK/envB" || exit 1
    mkdir -p "$WORK/whA" "$WORK/none"
    echo "torch site: $TORCH_SITE"
    step "$WORK/envA/bin/python" -c "import torch, fa_kernels" # expected to fail: nothing installed yet
    step $PY -m fa_dist install --python "$WORK/envA/bin/python" --wheelhouse "$WORK/whA"
    step $PY -m fa_dist doctor --python "$WORK/envA/bin/python"
    step $PY -m fa_dist smoke --python "$WORK/envA/bin/python" --full
    ls -la "$WORK/whA"

    # B: A's wheelhouse (plus the wrong wheel) as a static index on 127.0.0.1
    cp -r "$WORK/whA" "$WORK/whB"
    if [ -n "$WRONG" ]; then
        cp "$WRONG"/*.whl "$WORK/whB/"
        $PY - "$WRONG" "$WORK/whB" <<'EOF'
import sys
from pathlib import Path
from fa_dist.act import wheelhouse
for entry in wheelhouse.read(Path(sys.argv[1])):
    wheelhouse.add(Path(sys.argv[2]), entry)
EOF
    fi
    step $PY -m fa_dist index build "$WORK/whB" --out "$WORK/site"
    $PY -m http.server --bind 127.0.0.1 8765 --directory "$WORK/site" >/dev/null 2>&1 &
    server=$!
    sleep 1
    export FA_DIST_CACHE_DIR=$WORK/cacheB
    step $PY -m fa_dist install --python "$WORK/envB/bin/python" --wheelhouse "$WORK/none" \
        --index-url http://127.0.0.1:8765/ --dry-run
    step $PY -m fa_dist install --python "$WORK/envB/bin/python" --wheelhouse "$WORK/none" \
        --index-url http://127.0.0.1:8765/ --no-build
    step $PY -m fa_dist install --python "$WORK/envB/bin/python" --wheelhouse "$WORK/none" \
        --index-url http://127.0.0.1:8765/ --no-build --json
    step $PY -m fa_dist doctor --python "$WORK/envB/bin/python"
    kill "$server"
} 2>&1 | tee "$OUT/install.log"
echo "$WORK/envA/bin/python" > "$OUT/envA"
