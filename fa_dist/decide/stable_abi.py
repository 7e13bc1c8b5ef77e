"""torch's stable ABI (the C shim behind torch/csrc/stable) and Python's limited API, as fa-dist uses
them: which ABI a build targets, the flags that pin it, and what a stable-ABI build serves.

A stable-ABI build compiled with ``TORCH_TARGET_VERSION`` = torch X.Y calls only C shim functions that
exist in X.Y, so its binary loads into every torch >= X.Y built for the same accelerator runtime. The
glue's only use of Python is an empty module init, so every compiled wheel is built on the limited API
(``cp310-abi3``): one binary for CPython 3.10 and later.
"""

from __future__ import annotations

from enum import Enum

from fa_dist.errors import ConfigError
from fa_dist.model.variant import Runtime, Variant
from fa_dist.model.versions import TorchMinor

# The limited API version the glue compiles against (Py_LIMITED_API) and the wheel tag it earns:
# the oldest CPython the project supports (kernels/pyproject.toml requires-python >= 3.10).
LIMITED_API_TAG = "cp310"
LIMITED_API_HEX = "0x030A0000"


class Abi(Enum):
    STABLE = "stable"  # torch's stable C ABI: one binary for torch >= the target
    TORCH = "torch"  # built for exactly the installed torch minor


def target_flag(target: TorchMinor) -> str:
    """The define that makes torch's headers refuse any API newer than ``target``
    (torch/csrc/stable/version.h: major << 56 | minor << 48)."""
    return f"-DTORCH_TARGET_VERSION=0x{target.major:02x}{target.minor:02x}000000000000"


def choose(request: str, *, torch: TorchMinor, target: TorchMinor | None) -> tuple[Abi, str]:
    """The ABI a build targets, and why: ``auto`` is stable where the recipe has a stable-ABI target
    and this torch is at least that target, else torch-specific."""
    if request not in ("auto", "stable", "torch"):
        raise ConfigError(f"--abi {request}: expected stable, torch or auto")
    if request == "torch":
        return Abi.TORCH, f"--abi torch: a wheel for torch {torch} only"
    if target is None:
        if request == "stable":
            raise ConfigError(
                "--abi stable: this recipe has no stable-ABI target", fix="use --abi torch"
            )
        return Abi.TORCH, "the recipe has no stable-ABI build: a wheel for this torch only"
    if torch < target:
        if request == "stable":
            raise ConfigError(
                f"--abi stable: the stable-ABI build targets torch >= {target}, this is torch {torch}",
                fix=f"use --abi torch, or upgrade torch to {target} or newer",
            )
        return Abi.TORCH, f"torch {torch} is older than the stable-ABI target {target}"
    return Abi.STABLE, (
        f"stable ABI (TORCH_TARGET_VERSION {target}): one wheel for torch >= {target}, "
        f"CPython >= 3.10"
    )


def serves(variant: Variant) -> str:
    """What a build loads into, in words: 'torch >= 2.10 with CUDA 13.x (13.0 or newer)'."""
    rt = variant.runtime_version
    if variant.runtime is Runtime.CUDA:
        runtime = f"CUDA {rt.major}.x ({rt} or newer)"
    else:
        runtime = f"ROCm {rt.major}.{rt.minor}"
    torch = f"torch >= {variant.torch}" if variant.stable_abi else f"torch {variant.torch} only"
    return f"{torch} with {runtime}"
