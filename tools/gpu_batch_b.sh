#!/usr/bin/env bash
# One GPU call: #16's tests, #15 re-measured (no warm section), #13's kernel tests. Usage: bash tools/gpu_batch_b.sh
export SKIP_WARM=1 PART=tests
bash tools/gpu_all.sh tools/gpu_issue16.sh:240 tools/gpu_issue15.sh:210 tools/gpu_issue13t.sh:120
