"""The facts about one machine and one target interpreter, as one frozen value.

Every fact is a value or ``None``; when it is None, ``Environment.unknown[name]`` says why it could
not be seen. An Environment round-trips through JSON (``to_json`` / ``from_json``), so any decision
fa-dist makes can be replayed on a saved snapshot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from fa_dist.errors import ConfigError
from fa_dist.model import codec
from fa_dist.model.versions import Arch, CudaVersion

SCHEMA_VERSION = 1


class ImportStatus(Enum):
    OK = "ok"
    MISSING = "missing"
    BROKEN = "broken"


@dataclass(frozen=True, kw_only=True)
class PythonInfo:
    executable: str
    version: str
    implementation: str
    abi_tag: str
    platform: str
    machine: str
    glibc: str | None
    prefix: str
    in_venv: bool
    pip_version: str | None


@dataclass(frozen=True, kw_only=True)
class Gpu:
    index: int
    name: str
    arch: Arch | None
    memory_mib: int | None


@dataclass(frozen=True, kw_only=True)
class Sdpa:
    """torch's scaled_dot_product_attention in the target, as its own checks answer (issue #18).

    Keys: ``enabled`` by backend (flash, mem_efficient, cudnn, math: torch.backends.cuda switches);
    ``usable`` "flash/fp16/128" -> torch's can_use_*_attention on a GPU tensor (empty without a GPU);
    ``chosen`` "fp16/128" -> the SDPBackend torch's dispatcher picks for causal self-attention."""

    enabled: dict[str, bool | None] = field(default_factory=dict)
    usable: dict[str, bool | None] = field(default_factory=dict)
    chosen: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TorchInfo:
    status: ImportStatus
    error: str | None = None
    version: str | None = None
    location: str | None = None
    cuda: CudaVersion | None = None
    hip: str | None = None
    cxx11_abi: bool | None = None
    cuda_available: bool | None = None
    cuda_error: str | None = None
    devices: tuple[Gpu, ...] = ()
    arch_list: tuple[str, ...] = ()
    cudnn: str | None = None
    triton_requirement: str | None = None
    sdpa: Sdpa | None = None


@dataclass(frozen=True, kw_only=True)
class PackageInfo:
    """An installed distribution that carries compiled kernels (flash-attn, fa-kernels) or, among
    ``Environment.neighbours``, another attention package (xformers, FA3/FA4, transformers)."""

    name: str
    version: str
    location: str | None
    import_status: ImportStatus
    import_error: str | None = None
    build_info: dict[str, str] = field(default_factory=dict)
    requires_torch: str | None = None  # its Requires-Dist on torch, "torch==2.10.0"
    attention_op: str | None = None  # xformers: the fmha op its dispatcher picks here (GPU only)
    # xformers: each fmha forward op's status, as `python -m xformers.info` says it (GPU: usable here or why not)
    fmha_ops: dict[str, str] = field(default_factory=dict)
    # fa-kernels: its precompiled Triton kernels, {"triton-3.6.0 cuda:90": kernel count}
    precompiled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Provider:
    """An installed distribution that ships a top-level ``flash_attn`` package."""

    name: str
    version: str
    location: str | None


@dataclass(frozen=True, kw_only=True)
class NvidiaDriver:
    version: str
    cuda: CudaVersion | None
    source: str
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Rocm:
    version: str | None
    source: str
    gfx: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Tool:
    """A program on the host: where it is, what it says its version is, and whether it works."""

    path: str
    version: str | None
    ok: bool
    source: str
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class CxxCompiler:
    """A C++ compiler a build could link with, and the libstdc++ it links (issue #10)."""

    path: str
    source: str  # "CXX" (what the build uses when set) or "PATH"
    libstdcxx: str | None  # the shared libstdc++.so it links; None: only the static library
    cc: str | None = None  # its C compiler (gcc next to g++), for CC


@dataclass(frozen=True, kw_only=True)
class ExtensionLink:
    """How an installed compiled extension links the C++ runtime, read from its ELF (not imported)."""

    path: str
    needed: tuple[str, ...]
    runtime_defined: tuple[str, ...]  # libstdc++ symbols it defines itself: a private static copy


@dataclass(frozen=True, kw_only=True)
class Resources:
    cpus: int
    mem_total_mib: int | None
    mem_available_mib: int | None
    disk_free_mib: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OsInfo:
    system: str
    release: str
    machine: str


@dataclass(frozen=True, kw_only=True)
class Environment:
    schema: int = SCHEMA_VERSION
    fa_dist_version: str
    captured_at: str
    os: OsInfo
    python: PythonInfo | None
    torch: TorchInfo | None
    triton_version: str | None
    packages: tuple[PackageInfo, ...] = ()
    driver: NvidiaDriver | None = None
    rocm: Rocm | None = None
    nvcc: Tool | None = None
    nvcc_elsewhere: tuple[str, ...] = ()
    hipcc: Tool | None = None
    gcc: Tool | None = None
    gxx: Tool | None = None
    ninja: Tool | None = None
    cxx_compilers: tuple[CxxCompiler, ...] = ()  # the one the build would use first
    extensions: tuple[ExtensionLink, ...] = ()
    neighbours: tuple[PackageInfo, ...] = ()  # issue #18: attention packages beside ours
    flash_attn_providers: tuple[Provider, ...] = ()
    flash_attn_origin: str | None = (
        None  # where `import flash_attn` resolves, found without importing
    )
    resources: Resources
    env_vars: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(codec.encode(self))

    @classmethod
    def from_json(cls, data: Any) -> Environment:
        if not isinstance(data, dict):
            raise ConfigError("an environment snapshot must be a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise ConfigError(
                f"snapshot schema {data.get('schema')!r} is not {SCHEMA_VERSION}",
                fix="capture it again with this fa-dist: fa-dist detect -o FILE",
            )
        return _checked(codec.decode(cls, data))

    @classmethod
    def load(cls, path: Path) -> Environment:
        try:
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, a huge int
            raise ConfigError(f"{path} is not JSON: {str(exc)[:200]}") from None
        if isinstance(data, dict) and "environment" in data:  # a `doctor --json` report
            data = data["environment"]
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", fix=exc.fix) from None

    def package(self, name: str) -> PackageInfo | None:
        return next((p for p in self.packages if p.name == name), None)

    def neighbour(self, name: str) -> PackageInfo | None:
        return next((p for p in self.neighbours if p.name == name), None)

    @property
    def visible_gpus(self) -> tuple[Gpu, ...]:
        """GPUs the target torch can use (torch's view beats the driver's: it honours CUDA_VISIBLE_DEVICES)."""
        return self.torch.devices if self.torch else ()


_VERSION = re.compile(r"\d{1,4}\.\d{1,4}(\.\d{1,6})?([a-z0-9+.-]{0,40})?")


def _checked(env: Environment) -> Environment:
    """Facts later code parses as numbers must look like them (a snapshot may be hand-edited)."""
    py = env.python
    if py is not None:
        if not _VERSION.fullmatch(py.version):
            raise ConfigError(f"python.version {py.version!r} is not a version like 3.12.4")
        if py.glibc is not None and not _VERSION.fullmatch(py.glibc):
            raise ConfigError(
                f"python.glibc {py.glibc!r} is not a glibc version like 2.36 (null for musl)"
            )
    return env
