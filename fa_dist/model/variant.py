"""The build variant a compiled wheel is for, carried in its local version: ``0.1.0+cu130torch2.11cxx11abiTRUE``.

A binary extension built against torch's C++ API loads only into the torch minor, C++ ABI and
accelerator runtime major it was built against; the variant says which. One built on torch's stable
ABI (``cu130torch2.10stableabi``) loads into every torch from its target version on: there the torch
part is a lower bound and the C++ ABI plays no part (only C symbols cross the boundary). The
pure-Triton wheel has no variant (it is ``py3-none-any``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from fa_dist.errors import ParseError
from fa_dist.model.versions import CudaVersion, TorchMinor


class Runtime(Enum):
    CUDA = "cu"
    ROCM = "rocm"


# Wheel filenames and installed versions carry the local version lower-cased (PEP 440 normalisation):
# cxx11abitrue is the same variant as cxx11abiTRUE.
_TAG = re.compile(
    r"(?P<rt>cu|rocm)(?P<rv>\d+(?:\.\d+)?)torch(?P<torch>\d+\.\d+)"
    r"(?:cxx11abi(?P<abi>true|false)|(?P<stable>stableabi))",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class Variant:
    """``cu130torch2.11cxx11abiTRUE``, ``rocm6.4torch2.11cxx11abiTRUE`` or ``cu130torch2.10stableabi``.

    CUDA keeps major and minor (``cu130``): the rule is same major, build minor <= runtime minor.
    ROCm keeps major.minor, and must match exactly. ``torch`` is the exact torch minor of a
    torch-specific build, and the oldest torch served (TORCH_TARGET_VERSION) of a stable-ABI one.
    """

    runtime: Runtime
    runtime_version: CudaVersion  # for ROCm: (major, minor) of the ROCm release
    torch: TorchMinor
    cxx11_abi: bool
    stable_abi: bool = False

    def __post_init__(self) -> None:
        if self.stable_abi and not self.cxx11_abi:
            # one spelling per variant: the C++ ABI flag means nothing to a stable-ABI build
            object.__setattr__(self, "cxx11_abi", True)

    def serves(self, torch: TorchMinor) -> bool:
        """Whether this build loads into ``torch`` (runtime and C++ ABI aside)."""
        return torch >= self.torch if self.stable_abi else torch == self.torch

    @classmethod
    def parse(cls, text: str) -> Variant:
        m = _TAG.fullmatch(text.strip())
        if not m:
            raise ParseError(
                f"not a build variant: {text!r} (expected e.g. cu130torch2.11cxx11abiTRUE)"
            )
        runtime = Runtime(m["rt"].lower())
        if runtime is Runtime.CUDA:
            version = CudaVersion.parse("cu" + m["rv"])
        else:
            major, _, minor = m["rv"].partition(".")
            version = CudaVersion(int(major), int(minor or 0))
        torch = TorchMinor.parse(m["torch"])
        if m["stable"]:
            return cls(runtime, version, torch, True, stable_abi=True)
        return cls(runtime, version, torch, m["abi"].upper() == "TRUE")

    def __str__(self) -> str:
        rv = (
            self.runtime_version.tag[2:]
            if self.runtime is Runtime.CUDA
            else f"{self.runtime_version.major}.{self.runtime_version.minor}"
        )
        abi = (
            "stableabi"
            if self.stable_abi
            else "cxx11abiTRUE"
            if self.cxx11_abi
            else "cxx11abiFALSE"
        )
        return f"{self.runtime.value}{rv}torch{self.torch}{abi}"

    @classmethod
    def from_local_version(cls, version: str) -> Variant | None:
        """The variant in a wheel version's local part, or None for a plain version."""
        _, plus, local = version.partition("+")
        return cls.parse(local) if plus else None
