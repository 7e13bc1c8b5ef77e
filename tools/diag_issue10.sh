#!/usr/bin/env bash
# Issue #10 diagnosis on a GPU machine: build + install the compiled wheel into the image's python,
# then run the crashing snippet and a few deliberately bad op calls, each in its own process, with a
# Python faulthandler trace and a native backtrace (cuda-gdb works as gdb for host code).
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
python3 -m fa_dist build --wheelhouse /tmp/wh 2>&1 | tail -5; python3 -m pip install -q --no-deps --force-reinstall /tmp/wh/*.whl; find / -name build.ninja -path "*fa*" 2>/dev/null | head -3 | while read f; do grep -E "^(cflags|post_cflags|cuda_cflags|ldflags)" "$f"; done
python3 -c "import fa_kernels, torch; print(fa_kernels.__file__, torch.__version__)"
g++ --version | head -1; python3 -c "import torch; print(torch._C._GLIBCXX_USE_CXX11_ABI, torch.__config__.show())" | head -12
cat > /tmp/snip.py <<'PY'
import sys, torch, fa_kernels, fa_kernels._C
case = sys.argv[1]
x = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16)
w = torch.ones(4096, device="cuda", dtype=torch.float32)
r = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16)
try:
    if case == "snippet":
        fa_kernels.rms_norm_fn(x, w, None, residual=r, prenorm=True, residual_in_fp32=True)
    elif case == "op_bad_weight":
        torch.ops.fa_kernels.rms_norm_fwd(x, None, w, 1e-6, 0.0, 0, torch.bfloat16, False, False)
    elif case == "op_1d":
        torch.ops.fa_kernels.rms_norm_fwd(x[0], None, None, 1e-6, 0.0, 0, torch.bfloat16, False, False)
    elif case == "op_bad_dtype":
        torch.ops.fa_kernels.rms_norm_fwd(x.double(), None, None, 1e-6, 0.0, 0, torch.float64, False, False)
    elif case == "attn_bad":
        q = torch.randn(1, 64, 2, 96, device="cuda", dtype=torch.float16)
        torch.ops.fa_kernels.flash_fwd(q, q, q, 0.1, False)
    elif case == "torch_check":
        torch.zeros(2, device="cuda").view(3)
    print(case, "returned")
except Exception as e:
    print(case, "raised", type(e).__name__, str(e).splitlines()[0])
PY
for c in torch_check op_1d op_bad_dtype op_bad_weight attn_bad snippet; do
  echo "=== $c"; python3 -X faulthandler /tmp/snip.py $c; echo "exit=$?"
done
echo "=== cuda-gdb snippet"
timeout 240 cuda-gdb -batch -ex run -ex bt --args python3 /tmp/snip.py snippet 2>&1 | grep -v "Thread\|Cuda Driver error" | tail -60
SO=$(python3 -c "import fa_kernels._C as m; print(m.__file__)"); ls -la $SO; nm -DC $SO | grep -i -E "typeinfo|__cxa|Error" | head -30; ldd $SO | head -20
} 2>&1 | tee "$OUT/diag.log"
