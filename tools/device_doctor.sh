#!/usr/bin/env bash
# On a GPU machine: capture real tool outputs and a probe snapshot (test fixtures), then run
# `fa-dist doctor` healthy and broken on purpose. Writes everything under $OUT (or ./out).
set -uo pipefail
OUT=${OUT:-$PWD/out}
cap=$OUT/capture; mkdir -p "$cap"
PY=$(command -v python3)
nvidia-smi > "$cap/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader > "$cap/nvidia-smi-query.txt" 2>&1
cat /proc/driver/nvidia/version > "$cap/proc-driver-nvidia-version.txt"
nvcc --version > "$cap/nvcc-version.txt" 2>&1
{ which nvcc gcc g++ ninja; echo "CUDA_HOME=${CUDA_HOME-unset}"; gcc -dumpfullversion; ninja --version; ls -d /usr/local/cuda*; } > "$cap/tools.txt" 2>&1
run() { echo; echo "================ $*"; /usr/bin/time -f "wall %es" "$@"; echo "exit=$?"; }
{
  run $PY -m fa_dist detect -o "$cap/env.json"
  run $PY -m fa_dist doctor -v
  echo "---- where doctor's time goes"; $PY -m fa_dist --debug doctor --json 2>&1 >/dev/null | grep -E "^probe|timings"
  run env CUDA_VISIBLE_DEVICES= $PY -m fa_dist doctor
  run env MAX_JOBS=256 $PY -m fa_dist doctor
  run env CUDA_HOME=/opt/no-such-cuda $PY -m fa_dist doctor
  # a runtime-only image: nvcc gone from PATH, CUDA_HOME unset, /usr/local/cuda hidden for a moment
  nvdir=$(dirname "$(command -v nvcc)")
  hidden=()
  for d in /usr/local/cuda /usr/local/cuda-*; do [ -e "$d" ] && mv "$d" "$d.hidden" && hidden+=("$d"); done
  run env -u CUDA_HOME -u CUDA_PATH PATH="$(echo "$PATH" | tr ':' '\n' | grep -v -e "^$nvdir\$" -e cuda | paste -sd:)" $PY -m fa_dist doctor
  for d in "${hidden[@]}"; do mv "$d.hidden" "$d"; done
} 2>&1 | tee "$OUT/doctor.log"
tar -C "$OUT" -czf "$OUT/capture.tgz" capture && rm -r "$cap"
