#!/usr/bin/env bash
# Issue #18 acceptance on a GPU machine (< 5 minutes), logs under $OUT:
#   setup.log           the venv: sees the image's packages (torch, triton, transformers) through a .pth,
#                       minus any flash-attn/fa-kernels/fa-dist of the image
#   before.txt/.json    fa-dist doctor --attention (text, JSON) before the compat
#   model_before.log/.json  a random-weight LlamaForCausalLM with flash_attention_2 and sdpa: which
#                       functions really ran (counted calls into flash_attn, torch sdpa, fa_kernels)
#   install.log         fa-dist install --flash-attn-compat (fa-kernels built for this GPU + the compat)
#   after.txt/.json     doctor --attention after;  model_after.log/.json  the model again
#   summary.txt         what doctor said for each consumer next to what ran
# Usage, from the repo root with the image's python3: OUT=/some/dir bash tools/gpu_issue18.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv imageenv step
VENV=$WORK/venv
export FA_DIST_CACHE_DIR=$WORK/cache

{
    echo "repo: $(git rev-parse --short HEAD 2>/dev/null)"; nvidia-smi -L
    $PY -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
    imageenv "$VENV"
} > "$OUT/setup.log" 2>&1 || { cat "$OUT/setup.log"; echo "could not make the venv"; exit 1; }

doctor() {  # doctor NAME: text and JSON reports of the venv
    timeout 90 $PY -m fa_dist doctor --attention --python "$VENV/bin/python" > "$OUT/$1.txt" 2>&1
    echo "exit=$?" >> "$OUT/$1.txt"
    timeout 90 $PY -m fa_dist doctor --attention --json --python "$VENV/bin/python" > "$OUT/$1.json" 2>> "$OUT/$1.txt"
}
model() {  # model NAME: what transformers really runs
    timeout 120 "$VENV/bin/python" tests/gpu/which_attention_runs.py --json "$OUT/$1.json" > "$OUT/$1.log" 2>&1
    echo "exit=$?" >> "$OUT/$1.log"
}

doctor before
model model_before
timeout 240 $PY -m fa_dist install --flash-attn-compat --python "$VENV/bin/python" --wheelhouse "$WORK/wh" \
    > "$OUT/install.log" 2>&1
echo "install exit=$?" >> "$OUT/install.log"
doctor after
model model_after

$PY - "$OUT" > "$OUT/summary.txt" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for when in ("before", "after"):
    print(f"== {when} fa-dist install --flash-attn-compat")
    try:
        report = json.loads((out / f"{when}.json").read_text())
        for c in report["attention"]:
            print(f"  doctor: {c['consumer']:<34} runs {c['runs']!s:<40} ({c['why'][:110]})")
        for f in report["findings"]:
            if f["id"].startswith(("neighbour", "flash-attn")):
                print(f"  finding {f['severity']}: {f['id']}: {f['title']}")
    except Exception as exc:
        print(f"  doctor report unreadable: {exc}")
    try:
        ran = json.loads((out / f"model_{when}.json").read_text())
        for impl, r in ran.items():
            print(f"  model:  {impl:<18} loaded={r['loaded']} config={r['config_impl']} calls={r['calls']} "
                  f"fa_kernels={r['fa_kernels_backends']} {r['error'] or ''}")
            for name, count in r.get("attention_kernels", {}).items():
                print(f"          GPU kernel x{count}: {name}")
    except Exception as exc:
        print(f"  model run unreadable: {exc}")
PYEOF
grep -H "exit=" "$OUT/before.txt" "$OUT/after.txt" "$OUT"/*.log >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
