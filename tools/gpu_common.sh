# Sourced by the tools/gpu_issue*.sh scripts: one prelude for a GPU machine's image (python3 with torch),
# run from the repo root. Sets OUT (logs), PY (the image's python), ROOT, WORK (a scratch folder),
# TORCH_SITE (where the image's torch lives); defines newenv and step.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TIMEFORMAT='wall %Rs' NO_COLOR=1 COLUMNS=160
PY=$(command -v python3)
ROOT=$PWD
WORK=$(mktemp -d)
TORCH_SITE=$($PY -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")

newenv() {  # newenv DIR: a venv that sees the image's torch and triton, nothing of fa-kernels; prints its python
    $PY -m venv --without-pip "$1" >/dev/null || return 1
    local site; site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$TORCH_SITE" > "$site/image-torch.pth"
    echo "$1/bin/python"
}
step() { echo; echo "================ $*"; time "$@"; echo "exit=$?"; }
