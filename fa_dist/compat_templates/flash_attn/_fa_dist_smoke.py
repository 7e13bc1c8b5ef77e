"""Smoke test of fa-dist's flash-attn compat, through flash_attn's names:
``python -m flash_attn._fa_dist_smoke`` prints one JSON line; exit status 1 when a case fails.

Imports every module, checks that the flash_attn found is this compat and that the distribution's
version is the package's, resolves the names transformers and other libraries import, then runs one
attention call and one norm call against plain PyTorch: on the GPU when there is one, else under
Triton's CPU interpreter at tiny sizes (fp16 there: the interpreter gets bf16 dots wrong).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

MODULES = (
    "flash_attn",
    "flash_attn.flash_attn_interface",
    "flash_attn.bert_padding",
    "flash_attn.layers.rotary",
    "flash_attn.ops.rms_norm",
    "flash_attn.ops.triton.layer_norm",
)
# what transformers (5.x) and other libraries import by name, module -> names
NAMES = {
    "flash_attn": ("flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache"),
    "flash_attn.bert_padding": ("index_first_axis", "pad_input", "unpad_input"),
    "flash_attn.layers.rotary": ("apply_rotary_emb", "RotaryEmbedding"),
    "flash_attn.ops.rms_norm": ("DropoutAddRMSNorm", "dropout_add_rms_norm"),
    "flash_attn.ops.triton.layer_norm": ("RMSNorm", "layer_norm_fn", "rms_norm_fn"),
}


def _case(name: str, check: Callable[[], str]) -> dict[str, Any]:
    try:
        return {"name": name, "passed": True, "detail": check()}
    except Exception as exc:
        return {"name": name, "passed": False, "detail": f"{type(exc).__name__}: {exc}"[:600]}


def _modules() -> str:
    for name in MODULES:
        importlib.import_module(name)
    return f"{len(MODULES)} modules"


def _ours() -> str:
    from importlib import metadata

    import flash_attn

    installed = metadata.version("flash-attn")
    importlib.import_module("flash_attn._fa_kernels")  # absent from any other flash_attn
    if flash_attn.__version__ != installed:
        raise AssertionError(f"flash_attn.__version__ {flash_attn.__version__} != dist {installed}")
    return f"flash-attn {installed} at {os.path.dirname(flash_attn.__file__ or '?')}"


def _names(stand_ins: list[str]) -> str:
    from flash_attn._fa_kernels import MISSING_MARK

    for module, names in NAMES.items():
        found = importlib.import_module(module)
        for name in names:
            value = getattr(found, name)
            if hasattr(value, MISSING_MARK):
                stand_ins.append(f"{module}.{name}")
    return f"{sum(map(len, NAMES.values()))} names resolve"


def _rel(out: Any, ref: Any) -> float:
    out, ref = out.detach().double(), ref.detach().double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def _attention(device: str, dtype: Any, tol: float) -> str:
    import torch

    from flash_attn import flash_attn_func

    b, sq, sk, h, hk, d = 2, 23, 31, 4, 2, 32
    q = torch.randn(b, sq, h, d, device=device, dtype=dtype)
    k, v = (torch.randn(b, sk, hk, d, device=device, dtype=dtype) for _ in range(2))
    out = flash_attn_func(q, k, v, causal=True)
    kx, vx = (t.double().repeat_interleave(h // hk, dim=2) for t in (k, v))
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), kx) / d**0.5
    hidden = torch.ones(sq, sk, dtype=torch.bool, device=device).triu(sk - sq + 1)
    ref = torch.einsum("bhqk,bkhd->bqhd", scores.masked_fill(hidden, -torch.inf).softmax(-1), vx)
    err = _rel(out, ref)
    if not err < tol:
        raise AssertionError(f"relative error {err:.2e} >= {tol:.0e}")
    return f"flash_attn_func b{b} sq{sq} sk{sk} h{h}/{hk} d{d} causal: rel err {err:.1e}"


def _norm(device: str, dtype: Any, tol: float) -> str:
    import torch

    from flash_attn.ops.rms_norm import dropout_add_rms_norm

    x0, residual = (torch.randn(8, 256, device=device, dtype=dtype) for _ in range(2))
    weight = torch.rand(256, device=device, dtype=dtype) + 0.5
    z, x = dropout_add_rms_norm(x0, residual, weight, None, 0.0, 1e-5, prenorm=True)
    ref_x = x0.double() + residual.double()
    ref_z = ref_x * torch.rsqrt(ref_x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight.double()
    err = max(_rel(z, ref_z), _rel(x, ref_x))
    if not err < tol:
        raise AssertionError(f"relative error {err:.2e} >= {tol:.0e}")
    return f"dropout_add_rms_norm 8x256 prenorm: rel err {err:.1e}"


def run() -> dict[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before fa_kernels' kernels are defined
    dtype, tol = (torch.bfloat16, 2e-2) if device == "cuda" else (torch.float16, 4e-3)
    torch.manual_seed(0)
    stand_ins: list[str] = []
    cases = [
        _case("import every module", _modules),
        _case("flash_attn is this compat", _ours),
        _case("names libraries import", lambda: _names(stand_ins)),
        _case("attention through flash_attn", lambda: _attention(device, dtype, tol)),
        _case("norm through flash_attn.ops.rms_norm", lambda: _norm(device, dtype, tol)),
    ]
    fa_kernels = sys.modules.get("fa_kernels")
    return {
        "passed": all(c["passed"] for c in cases),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (Triton interpreter)",
        "fa_kernels": getattr(fa_kernels, "__version__", None),
        "cases": cases,
        "stand_ins": stand_ins,
    }


def main() -> int:
    result = run()
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
