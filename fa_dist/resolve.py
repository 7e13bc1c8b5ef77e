"""Which wheel fits this machine: a pure function from facts and candidates to a choice plus a trace
with one accepted-or-rejected line, and its reason, per candidate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging import tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from fa_dist.environment import Environment, ImportStatus
from fa_dist.errors import FaDistError
from fa_dist.variant import Runtime, TorchMinor, Variant
from fa_dist.versions import Arch

PACKAGE = "fa-kernels"


@dataclass(frozen=True, kw_only=True)
class Candidate:
    filename: str
    location: str  # a path or URL
    sha256: str | None
    archs: tuple[str, ...] = ()  # from the manifest; () = unknown
    ptx: str | None = None
    source: str = ""
    size: int | None = None  # bytes, from the manifest; None = unknown
    problem: str | None = None  # why the source's entry cannot be used (no valid sha256, ...)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    candidate: Candidate
    accepted: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class Resolution:
    choice: Candidate | None
    trace: tuple[Verdict, ...]

    def lines(self) -> list[str]:
        return [
            f"{'accept' if v.accepted else 'reject'} {v.candidate.filename} ({v.candidate.source}): "
            f"{v.reason}"
            for v in self.trace
        ]


def supported_tags(env: Environment) -> list[tags.Tag]:
    """The wheel tags the target interpreter accepts, from its facts (not this process's)."""
    py = env.python
    assert py is not None
    major, minor = (int(x) for x in py.version.split(".")[:2])
    machine = py.machine
    platforms = [f"linux_{machine}"]
    if py.glibc:
        glibc_minor = int(py.glibc.split(".")[1])
        platforms = [f"manylinux_2_{m}_{machine}" for m in range(glibc_minor, 16, -1)] + platforms
    if py.implementation != "cpython":
        return list(tags.compatible_tags((major, minor), platforms=platforms))
    found = list(tags.cpython_tags((major, minor), abis=[py.abi_tag], platforms=platforms))
    return found + list(tags.compatible_tags((major, minor), platforms=platforms))


def arch_covers(built: Sequence[str], ptx: str | None, gpu: Arch) -> bool:
    """A wheel runs on ``gpu`` if it has SASS of the same major and a lower-or-equal minor (an 'a'
    build only on exactly that arch), or PTX of an arch at most the GPU's, which the driver JITs."""
    for text in built:
        arch = Arch.parse(text)
        if arch.suffix:
            if arch.base == gpu.base:
                return True
        elif arch.major == gpu.major and arch.minor <= gpu.minor:
            return True
    return bool(ptx) and Arch.parse(ptx or "").base <= gpu.base


def judge(
    env: Environment, cand: Candidate, wheel_tags: set[tags.Tag]
) -> tuple[bool, str, tuple[int, ...]]:
    """(accepted, reason, rank); higher rank is better among the accepted."""
    if cand.problem:
        return False, cand.problem, ()
    try:
        name, version, _build, file_tags = parse_wheel_filename(cand.filename)
    except InvalidWheelFilename as exc:
        return False, f"not a wheel file name ({exc})", ()
    if name != PACKAGE:
        return False, f"a wheel of {name}, not {PACKAGE}", ()
    torch = env.torch
    torch_ok = torch is not None and torch.status is ImportStatus.OK and bool(torch.version)
    variant = Variant.from_local_version(str(version))
    if not file_tags & wheel_tags:
        why = (
            f"tags {', '.join(sorted(map(str, file_tags)))} do not fit this interpreter "
            f"({env.python.abi_tag if env.python else '?'}, {env.python.platform if env.python else '?'})"
        )
        also = _variant_fits(env, variant) if torch_ok and variant is not None else (True, "")
        return False, why if also[0] else f"{why}; and {also[1]}", ()
    if not torch_ok or torch is None:
        return False, "torch does not import in the target environment", ()
    if variant is None:
        if env.triton_version is None:
            return False, "pure-Triton wheel, but triton is not installed", ()
        return (
            True,
            "pure-Triton wheel (runs wherever triton does; no compiled kernels)",
            (0, *version.release),
        )
    ok, why = _variant_fits(env, variant)
    if not ok:
        return False, why, ()
    gpus = [g.arch for g in env.visible_gpus if g.arch]
    if cand.archs:
        uncovered = [g for g in gpus if not arch_covers(cand.archs, cand.ptx, g)]
        if uncovered:
            return (
                False,
                (
                    f"built for {' '.join(cand.archs)}{f' + PTX {cand.ptx}' if cand.ptx else ''}, "
                    f"no code for {', '.join(map(str, uncovered))}"
                ),
                (),
            )
    elif gpus:
        return (
            True,
            f"{variant} matches; archs unknown (no manifest entry)",
            (1, *version.release),
        )
    exact = all(any(Arch.parse(a).base == g.base for a in cand.archs) for g in gpus)
    return (
        True,
        f"{variant} matches torch {torch.version}",
        (2 if exact else 1, *version.release),
    )


def _variant_fits(env: Environment, variant: Variant) -> tuple[bool, str]:
    torch = env.torch
    assert torch is not None and torch.version
    have = TorchMinor.parse(torch.version)
    if variant.torch != have:
        return False, f"built for torch {variant.torch}, this is torch {torch.version}"
    if torch.cxx11_abi is not None and variant.cxx11_abi != torch.cxx11_abi:
        return False, f"built with cxx11abi={variant.cxx11_abi}, torch uses {torch.cxx11_abi}"
    if variant.runtime is Runtime.CUDA:
        if torch.cuda is None:
            return False, f"a CUDA {variant.runtime_version} build, this torch has no CUDA"
        if variant.runtime_version.major != torch.cuda.major:
            return (
                False,
                f"built for CUDA {variant.runtime_version}, torch uses CUDA {torch.cuda} (major differs)",
            )
        if variant.runtime_version.minor > torch.cuda.minor:
            return (
                False,
                f"built for CUDA {variant.runtime_version}, newer than torch's CUDA {torch.cuda}",
            )
        return True, ""
    if torch.hip is None:
        return False, f"a ROCm {variant.runtime_version} build, this torch has no HIP"
    hip = TorchMinor.parse(torch.hip)
    if (hip.major, hip.minor) != (variant.runtime_version.major, variant.runtime_version.minor):
        return False, f"built for ROCm {variant.runtime_version}, torch uses HIP {torch.hip}"
    return True, ""


def resolve(env: Environment, candidates: Iterable[Candidate]) -> Resolution:
    wheel_tags = set(supported_tags(env)) if env.python else set()
    trace: list[Verdict] = []
    best: Candidate | None = None
    best_rank: tuple[int, ...] = ()
    for cand in candidates:
        try:
            ok, why, rank = judge(env, cand, wheel_tags)
        except FaDistError as exc:  # an odd name or arch in one source must not stop the others
            ok, why, rank = False, f"unreadable: {exc.message}", ()
        trace.append(Verdict(candidate=cand, accepted=ok, reason=why))
        if ok and rank > best_rank:
            best, best_rank = cand, rank
    return Resolution(choice=best, trace=tuple(trace))
