"""Issue #13 acceptance on a GPU: transformers' LlamaForCausalLM with attn_implementation=
"flash_attention_2", served by fa-dist's flash-attn compat (fa-kernels underneath), against "sdpa".

Run it in an environment where `fa-dist install --flash-attn-compat` put the compat
(tools/gpu_issue13c.sh does everything):

    python tests/gpu/check_transformers_flash_attention_2.py [--json results.json]

A small random Llama (seed fixed, built from LlamaConfig, no hub access): GQA 8 query / 2 key-value
heads, hidden 256, 2 layers, bf16. The same weights run as "flash_attention_2" (FA2), "sdpa" (SDPA)
and, as the precision yardstick, "sdpa" in float32 (REF). Checks, each PASS or FAIL in one table:
  - transformers selected FA2 (is_flash_attn_2_available, model.config._attn_implementation), and
    its calls reached flash_attn's names (counted) and ran fa_kernels' functions;
  - logits of the valid positions of a left-padded batch (the varlen path);
  - greedy `generate` tokens on that batch (prefill and decode with padding); a divergence passes
    only where REF puts the two tokens within bf16 noise of each other (a near tie);
  - a training step's loss and gradients, left-padded (varlen forward and backward) and unpadded
    (flash_attn_func forward and backward).
FA2's error is measured against REF, the float32 truth: it must be bf16-sized (below an absolute bound)
and at most twice SDPA's own error against REF (or below a floor). FA2~SDPA is printed too, but two bf16
results can differ by the sum of their errors, and where SDPA is the one far from REF (seen: left-padded
training, H200) a bound on FA2~SDPA would blame FA2 for SDPA's error. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class Check:
    name: str
    passed: bool
    measured: str
    bound: str
    detail: str = ""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def environment(device: str) -> dict[str, Any]:
    import flash_attn
    import transformers
    from transformers.utils import is_flash_attn_2_available

    import fa_kernels

    compat = hasattr(flash_attn, "FA_KERNELS_BUILT_FOR")  # only the compat's flash_attn has it
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "flash_attn": f"{flash_attn.__version__} at {flash_attn.__file__}",
        "flash_attn_is_fa_dist_compat": compat,
        "fa_kernels": f"{fa_kernels.__version__}, backends {fa_kernels.available()}",
        "is_flash_attn_2_available": bool(is_flash_attn_2_available()),
        "device": torch.cuda.get_device_name() if device == "cuda" else device,
    }


def count_calls() -> Counter[str]:
    """Wrap flash_attn's two attention functions (before transformers imports them) to count the
    calls that reach them; the wrappers keep the signatures transformers inspects."""
    import flash_attn
    from flash_attn import flash_attn_interface

    counts: Counter[str] = Counter()
    for name in ("flash_attn_func", "flash_attn_varlen_func"):
        target = getattr(flash_attn, name)

        @functools.wraps(target)
        def counted(*args: Any, _name: str = name, _target: Callable[..., Any] = target, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _target(*args, **kwargs)

        setattr(flash_attn, name, counted)
        setattr(flash_attn_interface, name, counted)
    return counts


def build_models(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                         attention_dropout=0.0, initializer_range=0.05, pad_token_id=0, bos_token_id=1,
                         eos_token_id=None, tie_word_embeddings=False)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    models = {"SDPA": LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa", dtype=dtype)}
    models["FA2"] = LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="flash_attention_2",
                                                  dtype=dtype)
    models["REF"] = LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa",
                                                  dtype=torch.float32)
    weights = models["SDPA"].state_dict()
    for name in ("FA2", "REF"):
        models[name].load_state_dict(weights)  # REF: the same bf16 values, held in float32
    return {k: m.to(args.device).eval() for k, m in models.items()}


def left_padded_batch(device: str, seed: int, lengths: tuple[int, ...] = (96, 61, 23, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(3, 512, (n,), generator=gen)
        mask[row, width - n:] = 1
    return ids.to(device), mask.to(device)


def check_selection(models: dict[str, Any], env: dict[str, Any], counts: Counter[str]) -> Check:
    import transformers.modeling_flash_attention_utils as fa_utils

    chosen = models["FA2"].config._attn_implementation
    varlen = getattr(fa_utils, "_flash_varlen_fn", None)
    runs_on = getattr(getattr(varlen, "__wrapped__", varlen), "__module__", "?")
    ok = (env["is_flash_attn_2_available"] and chosen == "flash_attention_2" and env["flash_attn_is_fa_dist_compat"]
          and runs_on.startswith("fa_kernels") and sum(counts.values()) > 0)
    return Check("transformers selected flash_attention_2 through the compat", ok,
                 f"available={env['is_flash_attn_2_available']}, chosen={chosen}, calls={dict(counts)}",
                 "available, chosen, calls > 0", f"varlen function from {runs_on}")


def check_logits(models: dict[str, Any], batch: tuple[torch.Tensor, torch.Tensor], report: dict[str, float]) -> Check:
    ids, mask = batch
    with torch.no_grad():
        logits = {k: m(input_ids=ids, attention_mask=mask).logits.float() for k, m in models.items()}
    valid = mask.bool()
    fa, sdpa, ref = (logits[k][valid] for k in ("FA2", "SDPA", "REF"))
    e_fs, e_fr, e_sr = rel(fa, sdpa), rel(fa, ref), rel(sdpa, ref)
    report["logit_noise"] = float((sdpa - ref).abs().max())  # how far bf16 moves a logit here
    ok = e_fr < 2e-2 and e_fr <= max(2 * e_sr, 1e-2)
    return Check("logits, valid positions of a left-padded batch", ok,
                 f"FA2~SDPA {e_fs:.1e}, FA2~REF {e_fr:.1e}, SDPA~REF {e_sr:.1e}",
                 "FA2~REF < 2e-2 and <= max(2 x SDPA~REF, 1e-2)",
                 f"{int(valid.sum())} positions, lengths {mask.sum(1).tolist()}")


def check_generate(models: dict[str, Any], batch: tuple[torch.Tensor, torch.Tensor], new_tokens: int,
                   noise: float) -> Check:
    ids, mask = batch
    out = {}
    for name in ("FA2", "SDPA"):
        with torch.no_grad():
            out[name] = models[name].generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    fa, sdpa = out["FA2"][:, ids.shape[1]:], out["SDPA"][:, ids.shape[1]:]
    same = int((fa == sdpa).sum())
    ties = []
    for row in range(fa.shape[0]):
        diff = (fa[row] != sdpa[row]).nonzero()
        if len(diff):
            ties.append(_near_tie(models["REF"], out["FA2"][row], mask[row], ids.shape[1] + int(diff[0]),
                                  int(sdpa[row, int(diff[0])]), noise))
    ok = all(t[0] for t in ties)
    detail = "; ".join(t[1] for t in ties) or "every token identical"
    return Check("greedy generate on the left-padded batch", ok, f"{same}/{fa.numel()} tokens identical",
                 "identical, or first divergence a near tie in REF", detail)


def _near_tie(ref: Any, row: torch.Tensor, mask_row: torch.Tensor, at: int, other: int, noise: float) -> tuple[bool, str]:
    """Whether REF (float32) scores FA2's token and SDPA's within 2x the bf16 logit noise at the
    first step where they differ."""
    prefix = row[:at][None]
    mask = torch.cat([mask_row, torch.ones(at - mask_row.numel(), dtype=mask_row.dtype, device=row.device)])[None]
    with torch.no_grad():
        logits = ref(input_ids=prefix, attention_mask=mask).logits[0, -1].float()
    gap = float((logits[int(row[at])] - logits[other]).abs())
    return gap <= 2 * noise, f"diverge at position {at}: REF logit gap {gap:.3f} vs 2 x noise {2 * noise:.3f}"


def _step(model: Any, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    labels = ids.masked_fill(mask == 0, -100) if mask is not None else ids
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.eval()
    return float(loss.detach()), grads


def _global(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    num = sum(float((a[n].double() - b[n].double()).norm() ** 2) for n in b)
    return (num / max(sum(float(b[n].double().norm() ** 2) for n in b), 1e-30)) ** 0.5


def check_training(models: dict[str, Any], ids: torch.Tensor, mask: torch.Tensor | None, counts: Counter[str]) -> Check:
    before = counts.copy()
    steps = {k: _step(m, ids, mask) for k, m in models.items()}
    (l_fa, g_fa), (l_s, g_s), (l_r, g_r) = (steps[k] for k in ("FA2", "SDPA", "REF"))
    e_fs, e_fr, e_sr = _global(g_fa, g_s), _global(g_fa, g_r), _global(g_s, g_r)
    worst = max(g_s, key=lambda n: rel(g_fa[n], g_s[n]))
    used = {k: counts[k] - before[k] for k in counts if counts[k] > before[k]}
    ok = e_fr < 5e-2 and e_fr <= max(2 * e_sr, 2e-2) and abs(l_fa - l_r) <= 1e-2 * abs(l_r) and set(g_fa) == set(g_s)
    kind = "left-padded (varlen)" if mask is not None else "unpadded (flash_attn_func)"
    return Check(f"training step, {kind}: loss and gradients", ok,
                 f"grads FA2~SDPA {e_fs:.1e}, FA2~REF {e_fr:.1e}, SDPA~REF {e_sr:.1e}; loss FA2 {l_fa:.4f} SDPA {l_s:.4f} REF {l_r:.4f}",
                 "FA2~REF < 5e-2 and <= max(2 x SDPA~REF, 2e-2), loss within 1% of REF",
                 f"worst parameter {worst}: {rel(g_fa[worst], g_s[worst]):.1e}; calls {used}")


def print_table(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.measured}")
        print(f"      {'':<{width}}  bound: {c.bound}" + (f"; {c.detail}" if c.detail else ""))
    print(f"\n{'ALL PASS' if all(c.passed for c in checks) else 'FAILED'}: "
          f"{sum(c.passed for c in checks)}/{len(checks)} checks")


def guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # one broken check must not hide the others
        return Check(name, False, "-", "-", f"{type(exc).__name__}: {exc}"[:500])


def main() -> int:
    args = parse_args()
    env = environment(args.device)
    print(json.dumps(env, indent=1))
    counts = count_calls()
    models = build_models(args)
    batch = left_padded_batch(args.device, args.seed)
    report: dict[str, float] = {"logit_noise": 0.05}
    checks = [
        guarded("logits", lambda: check_logits(models, batch, report)),
        guarded("generate", lambda: check_generate(models, batch, args.new_tokens, report["logit_noise"])),
        guarded("training, padded", lambda: check_training(models, *batch, counts)),
        guarded("training, unpadded", lambda: check_training(models, batch[0][:, -48:].contiguous(), None, counts)),
    ]
    checks.insert(0, check_selection(models, env, counts))
    print_table(checks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "checks": [asdict(c) for c in checks]}, f, indent=1)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
