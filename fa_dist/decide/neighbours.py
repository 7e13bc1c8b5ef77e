"""Doctor's checks of the attention packages beside ours (issue #18): xformers, FlashAttention-3/4,
vllm-flash-attn, transformers, and who provides ``flash_attn``. Pure: facts in, findings out."""

from __future__ import annotations

from collections.abc import Iterator

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fa_dist.decide import knowledge
from fa_dist.decide.finding import Finding, Severity, ok, pip
from fa_dist.model.environment import Environment, ImportStatus, PackageInfo, TorchInfo

# neighbours with a compiled part built against one torch: a torch they do not serve breaks them
COMPILED = frozenset({"xformers", "flash-attn-3", "vllm-flash-attn"})
FA_ARCHS = {"flash-attn-3": knowledge.FA3_ARCHS, "flash-attn-4": knowledge.FA4_ARCHS}
FA_TITLE = {"flash-attn-3": "FlashAttention-3", "flash-attn-4": "FlashAttention-4"}


def _torch(env: Environment) -> TorchInfo | None:
    torch = env.torch
    return torch if torch and torch.status is ImportStatus.OK and torch.version else None


def serves(spec: str, torch_version: str) -> bool | None:
    """Whether a requirement like ``torch==2.10.0`` / ``>=2.10`` admits this torch (None: unreadable)."""
    try:
        specs = SpecifierSet(spec.removeprefix("torch"))
        return specs.contains(Version(torch_version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return None


def xformers_for(torch_version: str) -> str | None:
    """The pip requirement of the newest xformers release that serves this torch, or None."""
    for release, spec in reversed(knowledge.XFORMERS_TORCH):
        if serves(spec, torch_version):
            return f"xformers>={release}" if spec.startswith(">") else f"xformers=={release}"
    return None


def check_neighbour_torch(env: Environment) -> Iterator[Finding]:
    torch = _torch(env)
    for pkg in env.neighbours:
        if not torch or not pkg.requires_torch:
            continue
        match = serves(pkg.requires_torch, torch.version or "")
        if match:
            yield ok(
                f"neighbour-{pkg.name}",
                f"{pkg.name} {pkg.version} serves torch {torch.version}",
                f"Requires-Dist: {pkg.requires_torch}; {pkg.location or ''}",
            )
        elif match is False:
            yield _pin_mismatch(env, pkg, torch)


def _pin_mismatch(env: Environment, pkg: PackageInfo, torch: TorchInfo) -> Finding:
    built = pkg.build_info.get("torch")
    evidence = f"{pkg.name} {pkg.version} Requires-Dist: {pkg.requires_torch}"
    if built:
        evidence += f"; built with torch {built} (its build record)"
    evidence += f"; installed torch {torch.version}"
    if pkg.import_error:
        evidence += f"; {pkg.import_error}"
    wanted = pkg.requires_torch or ""
    why = (
        f"`pip install` of {pkg.name} or of anything that depends on it would replace torch "
        f"{torch.version} with {wanted}"
    )
    if pkg.name in COMPILED:
        why = (
            f"its compiled ops were built against {wanted}'s C++ ABI: with torch {torch.version} "
            "they fail to load (undefined symbol _ZN3c10...) and it falls back or raises at the "
            f"first call; and {why}"
        )
    return Finding(
        id=f"neighbour-{pkg.name}",
        severity=Severity.ERROR if pkg.name in COMPILED else Severity.WARNING,
        title=f"{pkg.name} {pkg.version} was made for {wanted}, installed torch is {torch.version}",
        evidence=evidence,
        why=why,
        fix=_release_fix(env, pkg, torch),
    )


def _release_fix(env: Environment, pkg: PackageInfo, torch: TorchInfo) -> str:
    """A command that fixes the package without touching torch (--no-deps)."""
    if pkg.name == "xformers":
        wanted = xformers_for(torch.version or "")
        if wanted:
            return pip(env, f"install --no-deps '{wanted}'") + "   # keeps torch as it is"
        return pip(env, "uninstall -y xformers") + (
            f"   # no xformers release serves torch {torch.version}"
        )
    return (
        pip(env, f"install --no-deps '{pkg.name}'")
        + f"   # a release built for torch {torch.version}, or: "
        + pip(env, f"uninstall -y {pkg.name}")
    )


def check_neighbour_import(env: Environment) -> Iterator[Finding]:
    """A compiled neighbour that fails to load for another reason than its torch pin."""
    torch = _torch(env)
    for pkg in env.neighbours:
        if pkg.import_status is not ImportStatus.BROKEN:
            continue
        if (
            torch
            and pkg.requires_torch
            and serves(pkg.requires_torch, torch.version or "") is False
        ):
            continue  # check_neighbour_torch explains it
        cpu_only = torch is not None and torch.cuda is None and torch.hip is None
        yield Finding(
            id=f"neighbour-{pkg.name}-import",
            severity=Severity.INFO if cpu_only else Severity.WARNING,
            title=(
                f"{pkg.name} {pkg.version}'s compiled part needs a CUDA torch; this torch is CPU-only"
                if cpu_only
                else f"{pkg.name} {pkg.version}'s compiled part does not load"
            ),
            evidence=pkg.import_error or "",
            why=f"code that uses {pkg.name} falls back to another attention or fails at the call",
            fix=None if cpu_only else pip(env, f"install --no-deps --force-reinstall '{pkg.name}'"),
        )


def check_flash_attn_arch(env: Environment) -> Iterator[Finding]:
    gpus = env.visible_gpus
    for name, archs in FA_ARCHS.items():
        pkg = env.neighbour(name)
        if pkg is None or not gpus:
            continue
        seen = {str(g.arch.base) for g in gpus if g.arch}
        if seen & archs:
            continue
        yield Finding(
            id=f"neighbour-{name}-arch",
            severity=Severity.WARNING,
            title=f"{FA_TITLE[name]} ({name} {pkg.version}) cannot run on {', '.join(sorted(seen)) or 'this GPU'}",
            evidence=f"GPUs: {', '.join(f'{g.name} ({g.arch})' for g in gpus)}; it runs on {', '.join(sorted(archs))}",
            why="its kernels use instructions of those archs only: calls raise on this GPU",
            fix=pip(env, f"uninstall -y {name}")
            + "   # FlashAttention-2 (flash-attn) or fa-kernels run here",
        )


CHECKS = (
    check_neighbour_torch,
    check_neighbour_import,
    check_flash_attn_arch,
)
