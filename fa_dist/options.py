"""What each command was asked to do: one frozen value per command, built once by cli.py (or by a
library caller) and read by the pipelines. Defaults are the CLI's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Target:
    """Which environment a command looks at: an interpreter (default: the running one), or a saved
    snapshot (``fa-dist detect -o F``), which makes build and install plan-only."""

    python: str | None = None
    env_file: Path | None = None
    refresh: bool = False  # re-probe the target instead of using the facts cache


@dataclass(frozen=True, kw_only=True)
class DoctorOptions:
    target: Target = Target()
    strict: bool = False  # warnings fail too (exit 3), not only errors
    attention: bool = False  # also say which attention each consumer runs (issue #18)


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    target: Target = Target()
    recipe: str = "auto"  # cuda, rocm, triton, or auto (what torch is built for)
    arch: str = "native"  # native, all, or a list such as sm_80,sm_90
    jobs: int | None = None  # None: from cores and free memory
    wheelhouse: Path | None = None  # None: paths.default_wheelhouse()
    clean: bool = False
    ptx: str | None = None
    abi: str = "auto"  # stable (torch's stable ABI), torch (this torch only), or auto
    precompile: bool = (
        True  # on a GPU machine, put this GPU's compiled Triton kernels into the wheel
    )


@dataclass(frozen=True, kw_only=True)
class InstallOptions:
    target: Target = Target()
    wheelhouses: tuple[Path, ...] = ()  # empty: paths.default_wheelhouse()
    find_links: tuple[Path, ...] = ()
    index_urls: tuple[str, ...] = ()
    offline: bool = False
    allow_insecure_http: bool = False
    allow_unverified: bool = False  # accept index wheels without a valid sha256
    smoke_timeout: float | None = None  # None: $FA_DIST_SMOKE_TIMEOUT, else 600 s
    no_build: bool = False
    from_source: bool = False
    smoke: bool = True
    warm: bool = (
        True  # precompile the Triton kernels on a GPU machine unless the wheel brought them
    )
    dry_run: bool = False
    flash_attn_compat: bool = False  # also the flash-attn compat, in the same transaction


@dataclass(frozen=True, kw_only=True)
class UninstallOptions:
    target: Target = Target()  # an interpreter: a snapshot has nothing to remove
    compat_only: bool = False  # only the flash-attn compat; fa-kernels stays


@dataclass(frozen=True, kw_only=True)
class WarmOptions:
    target: Target = Target()  # an interpreter with fa-kernels installed and the GPU at hand
    jobs: int | None = None  # worker processes; None: the target's cores, at most 16
    if_missing: bool = False  # nothing to do when the package already has this Triton and GPU
