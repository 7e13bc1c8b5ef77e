"""Which GPU archs a build targets: exactly this machine's by default, or a list, or all a toolkit can.

Pure: facts (the GPUs, the toolkit, the recipe's archs) in, a choice with its reasons out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fa_dist.decide import knowledge
from fa_dist.errors import ConfigError
from fa_dist.model.versions import Arch, CudaVersion


@dataclass(frozen=True, kw_only=True)
class ArchChoice:
    archs: tuple[Arch, ...]
    ptx: Arch | None  # also embed PTX of this arch so newer GPUs can JIT it
    notes: tuple[str, ...]

    @property
    def torch_arch_list(self) -> str:
        """TORCH_CUDA_ARCH_LIST for torch.utils.cpp_extension: '8.0;9.0a+PTX'."""
        parts = [a.capability + ("+PTX" if a == self.ptx else "") for a in self.archs]
        return ";".join(parts)


def _supported(arch: Arch, toolkit: CudaVersion, recipe_archs: Sequence[Arch]) -> str | None:
    """Why ``arch`` cannot be built, or None when it can."""
    if arch.base not in [a.base for a in recipe_archs]:
        return (
            f"{arch} is not one the kernels are written for ({', '.join(map(str, recipe_archs))})"
        )
    if not knowledge.toolkit_can_target(toolkit, arch):
        return f"nvcc {toolkit} cannot target {arch}"
    return None


def native(arch: Arch) -> Arch:
    """The arch to compile for a GPU: Hopper gets sm_90a (wgmma, setmaxnreg), others their base arch."""
    return Arch.parse("sm_90a") if arch.base == Arch.parse("sm_90") else arch.base


def select(
    request: str,
    *,
    gpus: Sequence[Arch],
    toolkit: CudaVersion,
    recipe_archs: Sequence[Arch],
    ptx: str | None = None,
) -> ArchChoice:
    """``request``: 'native' (the visible GPUs), 'all' (every recipe arch the toolkit can build, with
    PTX of the newest for future GPUs), or a comma list like 'sm_80,sm_90'."""
    if request == "native":
        if not gpus:
            raise ConfigError(
                "no GPU visible to build for", fix="pass --arch sm_90 (or --arch all)"
            )
        wanted = tuple(dict.fromkeys(native(g) for g in gpus))
        return _checked(wanted, toolkit, recipe_archs, ptx=None, notes=("for the visible GPU(s)",))
    if request == "all":
        usable = tuple(a for a in recipe_archs if _supported(a, toolkit, recipe_archs) is None)
        skipped = tuple(
            f"skipped {a}: {_supported(a, toolkit, recipe_archs)}"
            for a in recipe_archs
            if a not in usable
        )
        if not usable:
            raise ConfigError(
                f"nvcc {toolkit} can build none of {', '.join(map(str, recipe_archs))}"
            )
        return ArchChoice(archs=usable, ptx=max(usable), notes=skipped)
    try:
        wanted = tuple(dict.fromkeys(Arch.parse(p) for p in request.split(",") if p.strip()))
    except ValueError as exc:
        raise ConfigError(
            f"--arch {request!r}: {exc}", fix="use e.g. --arch sm_80,sm_90, native or all"
        ) from None
    if not wanted:
        raise ConfigError("--arch is empty", fix="use e.g. --arch sm_80,sm_90, native or all")
    ptx_arch = Arch.parse(ptx) if ptx else None
    if ptx_arch is not None and ptx_arch not in wanted:
        raise ConfigError(f"--ptx {ptx} must be one of the archs built ({request})")
    return _checked(wanted, toolkit, recipe_archs, ptx=ptx_arch, notes=())


def _checked(
    wanted: tuple[Arch, ...],
    toolkit: CudaVersion,
    recipe_archs: Sequence[Arch],
    *,
    ptx: Arch | None,
    notes: tuple[str, ...],
) -> ArchChoice:
    for arch in wanted:
        why = _supported(arch, toolkit, recipe_archs)
        if why:
            raise ConfigError(
                f"cannot build for {arch}: {why}",
                fix="pick archs from the recipe that this nvcc supports, or --arch all",
            )
    return ArchChoice(archs=wanted, ptx=ptx, notes=notes)
