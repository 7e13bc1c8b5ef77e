"""Which attention each consumer will really run here, and why (`fa-dist doctor --attention`, issue
#18). Pure: it mirrors each consumer's own selection logic over the facts; nothing is imported."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from fa_dist.model import compat
from fa_dist.model.environment import Environment, ImportStatus, Sdpa

# transformers 5.x's is_flash_attn_2_available(): a distribution NAMED flash-attn at this version or
# newer that provides the flash_attn module, and CUDA. Source: transformers/utils/import_utils.py.
TRANSFORMERS_FA2_MIN = Version("2.3.3")
HUB_FA2_KERNEL = "kernels-community/flash-attn2"
SHAPES = ("fp16/64", "fp16/128", "bf16/64", "bf16/128")
# torch's dispatcher tries the fused backends in this order before math (sdp_utils priority_order)
SDPA_ORDER = ("flash", "mem_efficient", "cudnn")
SDPA_NAME = {
    "flash": "FLASH_ATTENTION",
    "mem_efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
}


@dataclass(frozen=True, kw_only=True)
class Choice:
    consumer: str  # "transformers flash_attention_2", "torch sdpa fp16/128", "fa_kernels auto"
    runs: str | None  # what will run; None: this path fails
    why: str


def _cuda(env: Environment) -> bool:
    return bool(env.torch and env.torch.status is ImportStatus.OK and env.torch.cuda_available)


def transformers_fa2(env: Environment) -> Choice:
    name = "transformers flash_attention_2"
    pkg = env.package(compat.DIST)
    if pkg is None:
        reason = "no distribution named flash-attn is installed"
    elif not _at_least(pkg.version, TRANSFORMERS_FA2_MIN):
        reason = f"flash-attn {pkg.version} is older than {TRANSFORMERS_FA2_MIN}"
    elif not _cuda(env):
        reason = "torch sees no CUDA device"
    else:
        who = "fa-dist's compat over fa-kernels" if compat.is_compat(pkg) else "upstream flash-attn"
        broken = pkg.import_status is not ImportStatus.OK
        return Choice(
            consumer=name,
            runs=None if broken else f"flash_attn {pkg.version} ({who})",
            why=f"flash-attn {pkg.version} provides flash_attn and CUDA is available"
            + (f", but it does not import: {pkg.import_error}" if broken else ""),
        )
    return _hub_fallback(env, name, reason)


def _hub_fallback(env: Environment, name: str, reason: str) -> Choice:
    """transformers then asks the hub for a flash-attn2 kernel through the `kernels` package."""
    if env.neighbour("kernels") is None:
        why = f"{reason}; the hub-kernel fallback ({HUB_FA2_KERNEL}) needs the `kernels` package, not installed"
        return Choice(consumer=name, runs=None, why=why)
    if env.env_vars.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        why = f"{reason}; the hub-kernel fallback ({HUB_FA2_KERNEL}) fails: HF_HUB_OFFLINE is set"
        return Choice(consumer=name, runs=None, why=why)
    return Choice(
        consumer=name,
        runs=f"hub kernel {HUB_FA2_KERNEL} (downloaded at load time)",
        why=f"{reason}; `kernels` is installed, so transformers fetches it (fails offline)",
    )


def _at_least(version: str, floor: Version) -> bool:
    try:
        return Version(version) >= floor
    except InvalidVersion:
        return False


def torch_sdpa(env: Environment) -> list[Choice]:
    torch = env.torch
    if not torch or torch.status is not ImportStatus.OK:
        return [Choice(consumer="torch sdpa", runs=None, why="torch does not import")]
    if torch.sdpa is None:
        failed = env.unknown.get("sdpa")
        why = f"the SDPA probe failed: {failed}" if failed else "not probed (an older snapshot)"
        return [Choice(consumer="torch sdpa", runs=None, why=why)]
    device = "GPU" if torch.cuda_available else "CPU"
    return [_sdpa_shape(torch.sdpa, shape, device) for shape in SHAPES]


def _sdpa_shape(sdpa: Sdpa, shape: str, device: str) -> Choice:
    dtype, head_dim = shape.split("/")
    usable = [b for b in SDPA_ORDER if sdpa.usable.get(f"{b}/{shape}")]
    off = [b for b in SDPA_ORDER if sdpa.enabled.get(b) is False]
    chosen = sdpa.chosen.get(shape) or next((SDPA_NAME[b] for b in usable), None)
    why = f"causal {dtype}, head dim {head_dim} on the {device}"
    if sdpa.usable:
        why += f"; usable: {', '.join(usable) or 'none of the fused backends'}"
    if off:
        why += f"; switched off: {', '.join(off)}"
    return Choice(consumer=f"torch sdpa {shape}", runs=chosen or "MATH", why=why)


def transformers_sdpa(env: Environment) -> Choice:
    sdpa = env.torch.sdpa if env.torch else None
    runs = sdpa.chosen.get("bf16/128") if sdpa else None
    return Choice(
        consumer="transformers sdpa (the default)",
        runs=f"torch sdpa: {runs}" if runs else "torch sdpa",
        why="F.scaled_dot_product_attention picks its backend per call; bf16, head dim 128 shown",
    )


def xformers(env: Environment) -> Choice:
    pkg = env.neighbour("xformers")
    if pkg is None:
        return Choice(consumer="xformers", runs=None, why="not installed")
    if pkg.import_status is not ImportStatus.OK:
        return Choice(
            consumer="xformers",
            runs=None,
            why=f"its compiled part does not load: {pkg.import_error}",
        )
    ops = _fmha_summary(pkg.fmha_ops)
    if pkg.attention_op is None:
        return Choice(
            consumer="xformers", runs=None, why=f"no GPU: its fmha ops need CUDA tensors{ops}"
        )
    return Choice(
        consumer="xformers memory_efficient_attention",
        runs=pkg.attention_op,
        why=f"its dispatcher's choice for causal fp16, head dim 128{ops}",
    )


def _fmha_summary(ops: dict[str, str]) -> str:
    """ "; fmha ops: flshattF@v2 usable here, cutlassF-pt available, ..." (what xformers.info would say)."""
    if not ops:
        return ""
    return "; fmha ops: " + ", ".join(f"{name} {status}" for name, status in ops.items())


def fa_kernels_auto(env: Environment) -> Choice:
    """Mirrors fa_kernels.backend.resolve("auto") for attention: triton on a GPU, else reference."""
    name = "fa_kernels auto"
    pkg = env.package("fa-kernels")
    if pkg is None:
        return Choice(consumer=name, runs=None, why="fa-kernels is not installed")
    forced = env.env_vars.get("FA_KERNELS_BACKEND", "auto")
    if forced != "auto":
        return Choice(consumer=name, runs=forced, why=f"FA_KERNELS_BACKEND={forced}")
    if _cuda(env) and env.triton_version:
        why = "a GPU and triton: auto's measured table gives attention to Triton on every class"
        return Choice(consumer=name, runs="triton", why=why)
    if env.env_vars.get("TRITON_INTERPRET") == "1" and env.triton_version:
        return Choice(consumer=name, runs="triton (CPU interpreter)", why="TRITON_INTERPRET=1")
    return Choice(
        consumer=name, runs="reference", why="no GPU: the PyTorch reference implementation"
    )


def choices(env: Environment) -> list[Choice]:
    """Every consumer's choice, in the order `doctor --attention` shows them."""
    found = []
    if env.neighbour("transformers"):
        found += [transformers_fa2(env), transformers_sdpa(env)]
    else:
        found.append(Choice(consumer="transformers", runs=None, why="not installed"))
    found += torch_sdpa(env)
    found += [xformers(env), fa_kernels_auto(env)]
    return found
