"""Issue #18 on a GPU: which attention a transformers model REALLY runs, to hold against what
`fa-dist doctor --attention` said. A small random-weight LlamaForCausalLM (from LlamaConfig, no hub)
is loaded with attn_implementation="flash_attention_2" and "sdpa"; calls into flash_attn's functions,
torch's scaled_dot_product_attention and fa_kernels' backend resolver are counted during a forward.

    python tests/gpu/which_attention_runs.py --json out.json

Prints one line per implementation and writes {impl: {"loaded": bool, "error": str|None,
"config_impl": str|None, "calls": {name: count}, "fa_kernels_backends": {name: count}}}.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

calls: Counter[str] = Counter()
backends: Counter[str] = Counter()


def _counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return fn(*args, **kwargs)

    return wrapper


def _patch() -> None:
    """Wrap before transformers imports the names (it binds them at model load)."""
    f = torch.nn.functional
    f.scaled_dot_product_attention = _counted("torch.sdpa", f.scaled_dot_product_attention)  # type: ignore[assignment]
    try:
        import flash_attn
    except Exception as exc:  # reported, not fatal: the "before" run has none
        print(f"flash_attn: not importable ({type(exc).__name__}: {exc})")
    else:
        print(f"flash_attn: {getattr(flash_attn, '__version__', '?')} from {flash_attn.__file__}")
        for name in ("flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache"):
            if hasattr(flash_attn, name):
                setattr(flash_attn, name, _counted(f"flash_attn.{name}", getattr(flash_attn, name)))
    try:
        from fa_kernels import backend
    except Exception:  # no fa_kernels: nothing of it to count
        return
    resolve = backend.resolve

    def counted_resolve(*args: Any, **kwargs: Any) -> str:
        chosen = resolve(*args, **kwargs)
        backends[chosen] += 1
        return chosen

    backend.resolve = counted_resolve  # type: ignore[assignment]


def _run(impl: str) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    calls.clear()
    backends.clear()
    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, vocab_size=1000)
    torch.manual_seed(0)
    try:
        model = LlamaForCausalLM._from_config(config, attn_implementation=impl, dtype=torch.bfloat16)
        model = model.to("cuda").eval()
        ids = torch.randint(0, 1000, (2, 64), device="cuda")
        with torch.no_grad():
            model(input_ids=ids)  # once outside the profiler: lazy init and Triton compiles
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                model(input_ids=ids)
        torch.cuda.synchronize()
    except Exception as exc:  # the "before" fa2 load is expected to fail
        return {"loaded": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}",
                "config_impl": None, "calls": dict(calls), "fa_kernels_backends": dict(backends)}
    return {"loaded": True, "error": None, "config_impl": model.config._attn_implementation,
            "calls": dict(calls), "fa_kernels_backends": dict(backends),
            "attention_kernels": attention_kernels(prof)}


# GPU kernel names that are attention: SDPA's cuDNN, flash and memory-efficient kernels, fa_kernels'
# Triton (_fwd_kernel) and CUDA C++ ones; what the profiler saw says which backend really ran
ATTENTION_NAMES = ("cudnn", "fmha", "flash", "attention", "attn", "_fwd_kernel", "mem_eff", "sdpa")


def attention_kernels(prof: Any) -> dict[str, int]:
    seen: dict[str, int] = {}
    for event in prof.events():
        name = event.name
        if event.device_type == torch.autograd.DeviceType.CUDA and any(a in name.lower() for a in ATTENTION_NAMES):
            seen[name[:90]] = seen.get(name[:90], 0) + 1
    return seen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    import transformers
    from transformers.utils import is_flash_attn_2_available

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"is_flash_attn_2_available: {is_flash_attn_2_available()}")
    _patch()
    results = {impl: _run(impl) for impl in ("flash_attention_2", "sdpa")}
    for impl, r in results.items():
        ran = ", ".join(f"{k} x{v}" for k, v in sorted(r["calls"].items())) or "nothing counted"
        kb = ", ".join(f"{k} x{v}" for k, v in sorted(r["fa_kernels_backends"].items()))
        print(f"{impl}: loaded={r['loaded']} config={r['config_impl']} ran: {ran}"
              + (f"; fa_kernels backends: {kb}" if kb else "") + (f"; error: {r['error']}" if r["error"] else ""))
        for name, count in r.get("attention_kernels", {}).items():
            print(f"    GPU kernel x{count}: {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
