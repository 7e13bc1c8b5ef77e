#!/usr/bin/env bash
# Issue #13 part 2 acceptance on a GPU machine: `fa-dist install --flash-attn-compat` into a fresh
# environment, then transformers' LlamaForCausalLM with attn_implementation="flash_attention_2"
# (through the compat, on fa-kernels) against "sdpa", then `fa-dist uninstall --flash-attn-compat`.
# The environment is a venv that sees the image's packages (torch, triton, transformers, pip) through
# a .pth file, minus any flash-attn, fa-kernels or fa-dist the image has; fa-kernels and the compat go
# into the venv's own site-packages. Run from the repo root; logs (6 files) under $OUT.
# Usage: bash tools/gpu_issue13c.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv imageenv step
VENV=$WORK/venv
export FA_DIST_CACHE_DIR=$WORK/cache

{
    echo "repo: $(git rev-parse --short HEAD 2>/dev/null) $(git status --short | wc -l) changed files"
    nvidia-smi -L
    $PY -c "import sys, torch, triton, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
    imageenv "$VENV"
} > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; echo "could not make the venv"; exit 1; }

{
    step "$VENV/bin/python" -c "import flash_attn"  # expected to fail: nothing installed yet
    step timeout 240 $PY -m fa_dist install --flash-attn-compat --python "$VENV/bin/python" --wheelhouse "$WORK/wh"
    cat "$VENV/fa-dist-install.json"
} 2>&1 | tee -a "$OUT/install.log"

timeout 45 $PY -m fa_dist doctor --python "$VENV/bin/python" -v > "$OUT/doctor.log" 2>&1
echo "doctor exit=$?" >> "$OUT/doctor.log"

{
    step timeout 150 "$VENV/bin/python" tests/gpu/check_transformers_flash_attention_2.py \
        --json "$OUT/transformers_fa2.json"
} 2>&1 | tee "$OUT/transformers_fa2.log"

{
    step timeout 45 $PY -m fa_dist uninstall --flash-attn-compat --python "$VENV/bin/python"
    step "$VENV/bin/python" -c "import fa_kernels; print('fa_kernels stays:', fa_kernels.__version__)"
    step "$VENV/bin/python" -c "import flash_attn"  # expected to fail again
    step "$VENV/bin/python" -c "from transformers.utils import is_flash_attn_2_available as a; print('is_flash_attn_2_available:', a())"
    ls "$VENV"/lib/python3*/site-packages
} 2>&1 | tee "$OUT/uninstall.log"

{
    grep -E "^(PASS|FAIL|ALL PASS|FAILED)" "$OUT/transformers_fa2.log"
    grep -E "flash-attn compat|error|exit=" "$OUT/install.log" | tail -8
    grep -E "flash-attn|flash_attn" "$OUT/doctor.log"
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
