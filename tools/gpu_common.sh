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

imageenv() {  # imageenv DIR: a bare venv whose python sees ALL of the image's site-packages (torch, triton,
              # transformers, pip, ...) except any flash-attn, fa-kernels or fa-dist, through a .pth file
    $PY -m venv --without-pip "$1" || return 1
    "$PY" - "$1" "$1.image-site" <<'PYEOF'
import site, sys
from pathlib import Path
venv, shadow = Path(sys.argv[1]), Path(sys.argv[2])
shadow.mkdir()
skip = ("flash_attn", "flash-attn", "fa_kernels", "fa-kernels", "fa_dist", "fa-dist", "__editable__")
seen = [*site.getsitepackages(), *(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))]
for folder in [Path(p) for p in dict.fromkeys(seen) if Path(p).is_dir()]:
    for entry in folder.iterdir():
        if entry.name.lower().startswith(skip) or entry.suffix == ".pth" or (shadow / entry.name).exists():
            if entry.name.lower().startswith(skip[:4]):
                print(f"left out of the venv: {entry}")
            continue
        (shadow / entry.name).symlink_to(entry)
target = Path(next(p for p in (venv / "lib").glob("python3*/site-packages")))
(target / "image-site.pth").write_text(f"{shadow}\n")
print(f"venv {venv} sees {shadow}")
PYEOF
}
