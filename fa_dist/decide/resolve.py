"""Which wheel fits this machine: a pure function from facts and candidates to a choice plus a trace
with one accepted-or-rejected line, and its reason, per candidate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging import tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from fa_dist.decide import stable_abi
from fa_dist.errors import FaDistError
from fa_dist.model.environment import Environment, ImportStatus
from fa_dist.model.variant import Runtime, Variant
from fa_dist.model.versions import Arch, TorchMinor
from fa_dist.model.wheel import Candidate

PACKAGE = "fa-kernels"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    candidate: Candidate
    accepted: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class Resolution:
    choice: Candidate | None
    trace: tuple[Verdict, ...]
    why: str = ""  # why the choice beat the next-best accepted candidate

    def lines(self) -> list[str]:
        lines = [
            f"{'accept' if v.accepted else 'reject'} {v.candidate.filename} ({v.candidate.source}): "
            f"{v.reason}"
            for v in self.trace
        ]
        if self.choice is not None and self.why:
            lines.append(f"choose {self.choice.filename}: {self.why}")
        return lines


# What each position of a rank means, for the trace: (compiled, exact arch, *version (four release
# numbers), stable ABI, stable-ABI target major, target minor). Arch fit comes first: the code that runs
# on this GPU matters most. Then, as HF kernels does, the newest release wins, and among builds of one
# release a stable-ABI build beats a torch-specific one, the newest target this torch satisfies first.
RELEASE_PARTS = 4
PREFERENCE = (
    "compiled kernels beat the pure-Triton fallback",
    "it has code built for exactly this GPU's arch",
    *("a newer fa-kernels release",) * RELEASE_PARTS,
    "a stable-ABI wheel is preferred over a torch-specific one of the same release: the same binary "
    "keeps working after a torch upgrade",
    "the newest stable-ABI target this torch satisfies",
    "the newest stable-ABI target this torch satisfies",
)


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
            (0, 0, 0, 0, 0, *version.release),
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
    exact = bool(cand.archs) and all(
        any(Arch.parse(a).base == g.base for a in cand.archs) for g in gpus
    )
    stable = (1, variant.torch.major, variant.torch.minor) if variant.stable_abi else (0, 0, 0)
    release = (*version.release, 0, 0, 0, 0)[:RELEASE_PARTS]
    rank = (1, int(exact), *release, *stable)
    matches = _matches(variant, torch.version or "")
    if not cand.archs and gpus:
        return True, f"{matches}; archs unknown (no manifest entry)", rank
    return True, matches, rank


def _matches(variant: Variant, torch_version: str) -> str:
    if variant.stable_abi:
        return f"{variant}: stable-ABI build for {stable_abi.serves(variant)}; this is torch {torch_version}"
    return f"{variant} matches torch {torch_version}"


def _variant_fits(env: Environment, variant: Variant) -> tuple[bool, str]:
    torch = env.torch
    assert torch is not None and torch.version
    have = TorchMinor.parse(torch.version)
    if variant.stable_abi and not variant.serves(have):
        return False, (
            f"stable-ABI build for torch >= {variant.torch}, this torch {torch.version} is older "
            "than its target"
        )
    if not variant.stable_abi and variant.torch != have:
        return False, f"built for torch {variant.torch}, this is torch {torch.version}"
    if (
        not variant.stable_abi
        and torch.cxx11_abi is not None
        and variant.cxx11_abi != torch.cxx11_abi
    ):
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
    ranked: list[tuple[tuple[int, ...], Candidate]] = []
    for cand in candidates:
        try:
            ok, why, rank = judge(env, cand, wheel_tags)
        except FaDistError as exc:  # an odd name or arch in one source must not stop the others
            ok, why, rank = False, f"unreadable: {exc.message}", ()
        trace.append(Verdict(candidate=cand, accepted=ok, reason=why))
        if ok:
            ranked.append((rank, cand))
    # sorted() keeps equal ranks in input order even reversed: the first of equals wins
    ranked.sort(key=lambda rc: rc[0], reverse=True)
    if not ranked:
        return Resolution(choice=None, trace=tuple(trace))
    (best_rank, best), runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    return Resolution(choice=best, trace=tuple(trace), why=preference(best_rank, runner_up))


def preference(best: tuple[int, ...], runner_up: tuple[tuple[int, ...], Candidate] | None) -> str:
    """Why ``best`` won: the first rank position where it beats the runner-up, in words."""
    if runner_up is None:
        return "the only candidate that fits"
    other_rank, other = runner_up
    for i, (mine, theirs) in enumerate(zip(best, other_rank, strict=False)):
        if mine != theirs:
            what = PREFERENCE[i]
            return f"{what} (over {other.filename})"
    return f"equal to {other.filename}; the first listed wins"
