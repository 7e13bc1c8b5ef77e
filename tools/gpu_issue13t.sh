#!/usr/bin/env bash
# Issue #13's GPU kernel tests alone (flash_attn_with_kvcache, paged varlen, sinks, rotary, bert_padding),
# on the checkout's fa_kernels. Logs under $OUT: gpu_tests.log.
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"  # OUT PY ROOT WORK TORCH_SITE newenv step
export PYTHONPATH="$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR=$WORK/triton-cache
timeout 110 $PY -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_kvcache.py \
    tests/kernels/test_padding_rotary.py tests/kernels/test_precompiled.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.log"
