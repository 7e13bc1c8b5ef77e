"""`doctor --attention`'s pure decision, on the real H100 and CPU snapshots (issue #18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fa_dist.decide import attention
from fa_dist.model.environment import ImportStatus, PackageInfo, Sdpa

from .envs import CPU, H100, mutate, with_env_vars

COMPAT = PackageInfo(name="flash-attn", version="2.8.3+fakernels.0.1.0", location="/site",
                     import_status=ImportStatus.OK, build_info={"provider": "fa-dist flash-attn compat"})


def _pkg(name: str, version: str = "1.0", **kw: object) -> PackageInfo:
    return PackageInfo(name=name, version=version, location="/site", import_status=ImportStatus.OK, **kw)  # type: ignore[arg-type]


def _by_consumer(env: object) -> dict[str, attention.Choice]:
    return {c.consumer: c for c in attention.choices(env)}  # type: ignore[arg-type]


def test_transformers_fa2_needs_a_distribution_named_flash_attn() -> None:
    env = mutate(H100(), neighbours=(_pkg("transformers", "5.17.0"),))
    env = mutate(env, packages=tuple(p for p in env.packages if p.name != "flash-attn"))
    choice = _by_consumer(env)["transformers flash_attention_2"]
    assert choice.runs is None
    assert "no distribution named flash-attn" in choice.why and "`kernels` package" in choice.why


def test_transformers_fa2_runs_the_compat_on_a_gpu_and_not_on_a_cpu() -> None:
    gpu = mutate(H100(), neighbours=(_pkg("transformers", "5.17.0"),), packages=(COMPAT,))
    assert _by_consumer(gpu)["transformers flash_attention_2"].runs == (
        "flash_attn 2.8.3+fakernels.0.1.0 (fa-dist's compat over fa-kernels)")
    cpu = mutate(CPU(), neighbours=(_pkg("transformers", "5.17.0"), _pkg("kernels", "0.11.0")),
                 packages=(COMPAT,))
    choice = _by_consumer(with_env_vars(cpu, HF_HUB_OFFLINE="1"))["transformers flash_attention_2"]
    assert choice.runs is None and "no CUDA" in choice.why and "HF_HUB_OFFLINE" in choice.why


def test_old_flash_attn_is_refused_like_transformers_does() -> None:
    env = mutate(H100(), neighbours=(_pkg("transformers"),), packages=(_pkg("flash-attn", "2.3.2"),))
    assert "older than 2.3.3" in _by_consumer(env)["transformers flash_attention_2"].why


def test_sdpa_reports_torchs_choice_and_what_is_switched_off() -> None:
    usable = {f"{b}/{s}": b != "flash" for b in ("flash", "mem_efficient", "cudnn") for s in attention.SHAPES}
    sdpa = Sdpa(enabled={"flash": False, "mem_efficient": True, "cudnn": True, "math": True}, usable=usable)
    found = _by_consumer(mutate(H100(), torch__sdpa=sdpa))
    choice = found["torch sdpa bf16/128"]
    assert choice.runs == "EFFICIENT_ATTENTION"  # no dispatcher answer recorded: first usable in order
    assert "usable: mem_efficient, cudnn" in choice.why and "switched off: flash" in choice.why
    chosen = Sdpa(enabled=sdpa.enabled, usable=usable, chosen={"bf16/128": "CUDNN_ATTENTION"})
    assert _by_consumer(mutate(H100(), torch__sdpa=chosen))["torch sdpa bf16/128"].runs == "CUDNN_ATTENTION"


def test_an_old_snapshot_without_sdpa_facts_says_so() -> None:
    assert _by_consumer(H100())["torch sdpa"].why == "not probed (an older snapshot)"
    crashed = mutate(H100(), unknown={"sdpa": "killed by signal 11 (a crash in native code)"})
    assert _by_consumer(crashed)["torch sdpa"].why.startswith("the SDPA probe failed: killed by signal 11")


def test_fa_kernels_auto_mirrors_the_backend_resolver() -> None:
    kernels = _pkg("fa-kernels", "0.1.0")
    assert _by_consumer(mutate(H100(), packages=(kernels,)))["fa_kernels auto"].runs == "triton"
    assert _by_consumer(mutate(CPU(), packages=(kernels,)))["fa_kernels auto"].runs == "reference"
    forced = with_env_vars(mutate(H100(), packages=(kernels,)), FA_KERNELS_BACKEND="cuda")
    assert _by_consumer(forced)["fa_kernels auto"].runs == "cuda"


def test_xformers_op_comes_from_its_dispatcher() -> None:
    env = mutate(H100(), neighbours=(_pkg("xformers", "0.0.35", attention_op="fa3F@3.0.0"),))
    assert _by_consumer(env)["xformers memory_efficient_attention"].runs == "fa3F@3.0.0"


def test_xformers_fmha_ops_are_listed_with_what_xformers_info_says() -> None:
    ops = {"fa3F@3.0.0": "usable here", "cutlassF-pt": "not for this input: bias not supported"}
    env = mutate(H100(), neighbours=(_pkg("xformers", "0.0.35", attention_op="fa3F@3.0.0", fmha_ops=ops),))
    why = _by_consumer(env)["xformers memory_efficient_attention"].why
    assert "fmha ops: fa3F@3.0.0 usable here, cutlassF-pt not for this input: bias not supported" in why
    no_gpu = mutate(CPU(), neighbours=(_pkg("xformers", "0.0.35", fmha_ops={"cutlassF-pt": "available"}),))
    assert _by_consumer(no_gpu)["xformers"].why == "no GPU: its fmha ops need CUDA tensors; fmha ops: cutlassF-pt available"


@pytest.mark.integration
def test_doctor_attention_flag_adds_the_table_and_the_json_key(tmp_path: Path) -> None:
    from .test_cli import fa_dist

    env = mutate(H100(), neighbours=(_pkg("transformers", "5.17.0"),), packages=(COMPAT,))
    snap = tmp_path / "h100.json"
    snap.write_text(json.dumps(env.to_json()))
    report = json.loads(fa_dist("doctor", "--env-file", str(snap), "--attention", "--json").stdout)
    fa2 = next(c for c in report["attention"] if c["consumer"] == "transformers flash_attention_2")
    assert fa2 == {"consumer": "transformers flash_attention_2",
                   "runs": "flash_attn 2.8.3+fakernels.0.1.0 (fa-dist's compat over fa-kernels)",
                   "why": "flash-attn 2.8.3+fakernels.0.1.0 provides flash_attn and CUDA is available"}
    text = " ".join(fa_dist("doctor", "--env-file", str(snap), "--attention").stdout.split())
    assert "Attention: what each consumer runs here" in text
    assert "fa_kernels auto │ - │ fa-kernels is not installed" in text
    assert "attention" not in json.loads(fa_dist("doctor", "--env-file", str(snap), "--json").stdout)
