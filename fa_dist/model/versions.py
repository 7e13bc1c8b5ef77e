"""Value types for the identifiers fa-dist reasons about: CUDA versions and GPU archs.

Each type has one canonical text form: ``parse(str(x)) == x`` for every value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from fa_dist.errors import ParseError


@dataclass(frozen=True, order=True)
class CudaVersion:
    """A CUDA toolkit, runtime or driver API version: ``13.0``."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        """Accept ``13.0``, ``13.0.48`` (patch dropped), ``cu130`` / ``130`` and the driver API's ``13000``."""
        raw = text.strip().lower().removeprefix("cu")
        if m := re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)*", raw):
            return cls(int(m[1]), int(m[2]))
        if re.fullmatch(r"\d{4,5}", raw):  # cudaDriverGetVersion: major*1000 + minor*10
            value = int(raw)
            return cls(value // 1000, (value % 1000) // 10)
        if re.fullmatch(r"\d{3}", raw):  # the tag form: cu130, cu128
            return cls(int(raw[:-1]), int(raw[-1]))
        raise ParseError(f"not a CUDA version: {text!r} (expected e.g. 13.0, cu130 or 13000)")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The short form used in wheel tags and PyTorch index names: ``cu130``."""
        return f"cu{self.major}{self.minor}"


class ArchFamily(Enum):
    NVIDIA = "sm"
    AMD = "gfx"


@dataclass(frozen=True, order=True)
class Arch:
    """A GPU architecture: ``sm_90``, ``sm_90a``, ``sm_100f`` or ``gfx942``.

    NVIDIA archs order by compute capability; the suffix (``a``: arch-specific
    features such as wgmma, ``f``: family) is kept because it changes what a
    binary may run on.
    """

    family: ArchFamily
    major: int
    minor: int
    suffix: str = ""
    gfx: str = ""  # AMD's full name, e.g. "gfx90a", kept verbatim

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Accept ``sm_90a``, ``sm90``, ``compute_90``, ``9.0``, ``9.0a``, ``(9, 0)``-style ``9,0`` and ``gfx942``."""
        raw = text.strip().lower()
        if m := re.fullmatch(r"gfx([0-9a-f]{3,4})(?::.*)?", raw):
            name = m[1]
            return cls(ArchFamily.AMD, int(name[:-2]), int(name[-2], 16), gfx=f"gfx{name}")
        if m := re.fullmatch(r"(?:sm_?|compute_?)(\d+)(\d)([af]?)", raw):
            return cls(ArchFamily.NVIDIA, int(m[1]), int(m[2]), m[3])
        if m := re.fullmatch(r"(\d+)[.,]\s*(\d)([af]?)(?:\+ptx)?", raw):
            return cls(ArchFamily.NVIDIA, int(m[1]), int(m[2]), m[3])
        raise ParseError(f"not a GPU arch: {text!r} (expected e.g. sm_90, 9.0a or gfx942)")

    @classmethod
    def from_capability(cls, major: int, minor: int) -> Arch:
        return cls(ArchFamily.NVIDIA, major, minor)

    def __str__(self) -> str:
        if self.family is ArchFamily.AMD:
            return self.gfx
        return f"sm_{self.major}{self.minor}{self.suffix}"

    @property
    def capability(self) -> str:
        """The form TORCH_CUDA_ARCH_LIST takes: ``9.0a``."""
        return f"{self.major}.{self.minor}{self.suffix}"

    @property
    def base(self) -> Arch:
        """The arch without its suffix: sm_90a -> sm_90."""
        return Arch(self.family, self.major, self.minor, gfx=self.gfx)

    @property
    def is_nvidia(self) -> bool:
        return self.family is ArchFamily.NVIDIA


@dataclass(frozen=True, order=True)
class TorchMinor:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> TorchMinor:
        m = re.match(r"(\d+)\.(\d+)", text.strip())
        if not m:
            raise ParseError(f"not a torch version: {text!r} (expected e.g. 2.11 or 2.11.0+cu130)")
        return cls(int(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"
