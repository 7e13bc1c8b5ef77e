#!/usr/bin/env bash
# Issue #12's GPU acceptance: an install interrupted during its smoke test (SIGINT, then SIGTERM) and two
# concurrent installs of different wheels leave a consistent environment, checked by the smoke test and
# the record. Run from the repo root with $OUT set: bash tools/gpu_issue12.sh   (about 3-4 minutes)
#   A: the compiled wheel, built by `fa-dist install` for this GPU into a fresh venv that sees the
#      image's torch through a .pth (as tools/device_install.sh does);
#   B: the pure-Triton wheel (`fa-dist build --recipe triton`), a different wheel of the same package.
# Prints one PASS/FAIL line per check (also in $OUT/summary.txt); logs in $OUT (6 files).
set -uo pipefail
set -m  # background jobs keep SIGINT (without job control bash starts them with SIGINT ignored)
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=160
PY=$(command -v python3)
WORK=$(mktemp -d)
export FA_DIST_CACHE_DIR=$WORK/cache
ENV=$WORK/env
LOG=$OUT/main.log
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }

verify() {  # NAME EXPECTED_WHEEL|any : installed version, record and smoke test agree (and match)
    "$PY" - "$ENV" "$2" <<'PYEOF' >> "$LOG" 2>&1
import json, subprocess, sys
from pathlib import Path
from packaging.utils import parse_wheel_filename
env, expected = Path(sys.argv[1]), sys.argv[2]
record = json.loads((env / "fa-dist-install.json").read_text())
code = "import importlib.metadata as m, fa_kernels; print(m.version('fa-kernels')); print(fa_kernels.__file__)"
version, where = subprocess.run([str(env / "bin/python"), "-I", "-c", code], capture_output=True, text=True,
                                cwd="/").stdout.split()
smoke = subprocess.run([sys.executable, "-m", "fa_dist", "smoke", "--python", str(env / "bin/python"), "--json"],
                       capture_output=True, text=True)
result = json.loads(smoke.stdout.strip().splitlines()[-1]) if smoke.returncode == 0 else {}
ok = (str(parse_wheel_filename(record["wheel"])[1]) == version and smoke.returncode == 0
      and result.get("fa_kernels") and str(env) in where and (expected == "any" or record["wheel"] == expected))
print(f"verify: record {record['wheel']}, installed {version} from {where}, smoke exit {smoke.returncode}, "
      f"expected {expected}: {'ok' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PYEOF
}

wait_for() {  # FILE PATTERN SECONDS
    for _ in $(seq 1 $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

interrupt_during_smoke() {  # SIGNAL LOGFILE
    "$PY" -m fa_dist install --python "$ENV/bin/python" --wheelhouse "$WORK/whB" --no-build > "$2" 2>&1 &
    local pid=$!
    if wait_for "$2" "smoke: " 240; then kill -"$1" "$pid"; fi  # the first case passed, more are running
    wait "$pid"; local rc=$?
    echo "install B interrupted by SIG$1: exit $rc" >> "$LOG"
    if [ "$rc" = 130 ] && grep -q "interrupted" "$2" && verify "sig$1" "$A_WHEEL"; then
        say "PASS SIG$1 during B's smoke test: exit 130, A ($A_WHEEL) still installed, recorded, smoke passes"
    else
        say "FAIL SIG$1 during B's smoke test (exit $rc; see $(basename "$2") and main.log)"
    fi
}

{
    "$PY" -m venv --without-pip "$ENV" || exit 1
    TORCH_SITE=$("$PY" -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
    echo "$TORCH_SITE" > "$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/image-torch.pth"
    mkdir -p "$WORK/whA" "$WORK/whB"
    echo "== A: build for this GPU and install"
    time "$PY" -m fa_dist install --python "$ENV/bin/python" --wheelhouse "$WORK/whA"
    echo "== B: the pure-Triton wheel"
    "$PY" -m fa_dist build --recipe triton --wheelhouse "$WORK/whB"
    ls -la "$WORK/whA" "$WORK/whB"
} >> "$LOG" 2>&1
A_WHEEL=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['wheel'])" "$ENV/fa-dist-install.json" 2>/dev/null)
if [ -z "$A_WHEEL" ] || ! verify setup any; then
    say "FAIL setup: wheel A did not install (see main.log)"; exit 1
fi
say "PASS setup: A = $A_WHEEL installed and smoke-tested"

interrupt_during_smoke INT "$OUT/sigint.log"
interrupt_during_smoke TERM "$OUT/sigterm.log"

# two installs of different wheels at once: they must run one after the other (the second waits for
# the target's lock), and the environment ends with what the record says, passing its smoke test
"$PY" -m fa_dist install --python "$ENV/bin/python" --wheelhouse "$WORK/whB" --no-build > "$OUT/concurrent_B.log" 2>&1 &
pb=$!
"$PY" -m fa_dist install --python "$ENV/bin/python" --wheelhouse "$WORK/whA" --no-build > "$OUT/concurrent_A.log" 2>&1 &
pa=$!
wait "$pb"; rb=$?
wait "$pa"; ra=$?
echo "concurrent installs: B exit $rb, A exit $ra" >> "$LOG"
if [ "$rb" = 0 ] && [ "$ra" = 0 ] && grep -q "waiting for another fa-dist install" "$OUT"/concurrent_*.log \
        && verify concurrent any; then
    say "PASS concurrent installs of A and B: serialised (one waited), record = installed files, smoke passes"
else
    say "FAIL concurrent installs (B exit $rb, A exit $ra; see concurrent_*.log and main.log)"
fi
tail -n 3 "$LOG"
