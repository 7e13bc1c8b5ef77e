"""matrix.yaml -> the list of wheel-building cells, with the reasons impossible cells were pruned.

Validation names the line, the key and what was expected, and suggests the key you probably meant.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fa_dist.decide import knowledge, matrix_values, safeyaml
from fa_dist.errors import ConfigError, ParseError
from fa_dist.model.variant import Runtime, Variant
from fa_dist.model.versions import Arch, CudaVersion, TorchMinor

TOP = {
    "version": int,
    "python": list,
    "platforms": list,
    "manylinux_image": str,
    "cxx11_abi": list,
    "pure_triton_wheel": bool,
    "torch": dict,
    "cuda": dict,
    "rocm": dict,
    "stable_abi": dict,
}
STABLE_KEYS: dict[str, type] = {"target": str, "runtimes": list}
TORCH_KEYS: dict[str, type] = {"python": list, "cuda": list, "rocm": list}
RUNTIME_KEYS: dict[str, type] = {"archs": list, "ptx": str, "platforms": list}
PLATFORMS = {
    "manylinux_x86_64": ("x86_64", "ubuntu-24.04"),
    "manylinux_aarch64": ("aarch64", "ubuntu-24.04-arm"),
}


@dataclass(frozen=True, kw_only=True)
class Cell:
    id: str
    python: str  # the Python it is built with: the oldest its torch supports (the wheel is abi3)
    torch: str  # the torch it is built against
    runtime: str  # "cu130" or "rocm6.4"
    platform: str
    variant: str
    abi: str  # "stable": serves every torch >= the target; "torch": exactly its torch
    torches: str  # the torch minors of matrix.yaml it serves, space-separated
    runtimes: str  # the CUDA/ROCm versions of those torches it serves
    pythons: str  # the Pythons it serves (cp310-abi3: every one from its own on)
    archs: str  # TORCH_CUDA_ARCH_LIST / PYTORCH_ROCM_ARCH
    cibw_build: str
    cibw_archs: str
    runner: str
    torch_index: str
    toolkit: str  # what before-all installs: "cuda-toolkit-13-0" or "rocm-6.4"
    build_args: str  # `fa-dist build` arguments for this cell: --recipe, --arch, --ptx


@dataclass(frozen=True, kw_only=True)
class Expansion:
    cells: tuple[Cell, ...]
    pruned: dict[str, int] = field(default_factory=dict)
    pure_triton_wheel: bool = True
    uncollapsed: int = 0  # cells one wheel per torch x Python x runtime x platform would need


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"no matrix file at {path.absolute()}",
            fix="run fa-dist matrix in the folder that holds matrix.yaml (an fa-dist checkout's "
            "root), or pass --file PATH/TO/matrix.yaml",
        )
    data, lines = safeyaml.load(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top")
    validate(data, lines, str(path))
    return data


def _err(where: str, lines: dict[str, int], key: str, message: str) -> ConfigError:
    line = lines.get(key) or lines.get(key.rsplit(".", 1)[0]) or 0
    return ConfigError(f"{where}:{line}: {key}: {message}")


def _keys(
    where: str, lines: dict[str, int], path: str, data: dict[str, Any], allowed: dict[str, type]
) -> None:
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f" (expected one of {', '.join(allowed)})"
            )
            raise _err(where, lines, full, f"unknown key{hint}")
        want = allowed[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise _err(
                where,
                lines,
                full,
                f"expected a {want.__name__}, got {type(value).__name__} {value!r}",
            )


def validate(data: dict[str, Any], lines: dict[str, int], where: str) -> None:
    _keys(where, lines, "", data, TOP)
    for key in ("version", "python", "platforms", "torch", "cuda"):
        if key not in data:
            raise _err(where, lines, "$", f"missing key {key!r}")
    if data["version"] != 1:
        raise _err(where, lines, "version", "expected 1")
    for plat in data["platforms"]:
        if plat not in PLATFORMS:
            raise _err(where, lines, "platforms", f"{plat!r} is not one of {', '.join(PLATFORMS)}")
    _validate_stable(data, lines, where)
    for minor, spec in data["torch"].items():
        _parse(where, lines, f"torch.{minor}", TorchMinor.parse, str(minor))
        if not isinstance(spec, dict):
            raise _err(where, lines, f"torch.{minor}", "expected a mapping")
        _keys(where, lines, f"torch.{minor}", spec, TORCH_KEYS)
        for rt in spec.get("cuda", []):
            if str(rt) not in data["cuda"]:
                raise _err(
                    where, lines, f"torch.{minor}.cuda", f"CUDA {rt} has no entry under cuda:"
                )
        for rt in spec.get("rocm", []):
            if str(rt) not in data.get("rocm", {}):
                raise _err(
                    where, lines, f"torch.{minor}.rocm", f"ROCm {rt} has no entry under rocm:"
                )
    for family in ("cuda", "rocm"):
        for version, spec in data.get(family, {}).items():
            key = f"{family}.{version}"
            if not isinstance(spec, dict):
                raise _err(where, lines, key, "expected a mapping")
            _keys(where, lines, key, spec, RUNTIME_KEYS)
            archs = [
                _parse(where, lines, f"{key}.archs", Arch.parse, str(a))
                for a in spec.get("archs", [])
            ]
            if not archs:
                raise _err(where, lines, f"{key}.archs", "expected at least one arch")
            if family == "cuda":
                toolkit = _parse(where, lines, key, CudaVersion.parse, str(version))
                for arch in archs:
                    if not knowledge.toolkit_can_target(toolkit, arch):
                        raise _err(
                            where, lines, f"{key}.archs", f"nvcc {toolkit} cannot build {arch}"
                        )
    for key, message in matrix_values.problems(data, list(PLATFORMS)):
        raise _err(where, lines, key, message)


def _validate_stable(data: dict[str, Any], lines: dict[str, int], where: str) -> None:
    stable = data.get("stable_abi")
    if stable is None:
        return
    _keys(where, lines, "stable_abi", stable, STABLE_KEYS)
    if "target" not in stable:
        raise _err(where, lines, "stable_abi", "missing key 'target' (the oldest torch served)")
    _parse(where, lines, "stable_abi.target", TorchMinor.parse, str(stable["target"]))
    for family in stable.get("runtimes", []):
        if family not in ("cuda", "rocm"):
            raise _err(where, lines, "stable_abi.runtimes", f"{family!r} is not cuda or rocm")


def _parse(where: str, lines: dict[str, int], key: str, parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except ParseError as exc:
        raise _err(where, lines, key, exc.message) from None


@dataclass(frozen=True, kw_only=True)
class Published:
    """One build torch publishes: a torch minor for one CUDA/ROCm version on one platform."""

    torch: TorchMinor
    family: str  # "cuda" or "rocm"
    version: CudaVersion
    platform: str
    pythons: tuple[str, ...]


def published(data: dict[str, Any]) -> tuple[list[Published], dict[str, int]]:
    """Every (torch, runtime, platform) torch publishes, and why the other combinations are not."""
    found: list[Published] = []
    pruned: dict[str, int] = {}
    for torch_minor, spec in sorted(
        data["torch"].items(), key=lambda kv: TorchMinor.parse(str(kv[0]))
    ):
        pythons = tuple(p for p in data["python"] if p in spec.get("python", data["python"]))
        runtimes = [("cuda", str(v)) for v in spec.get("cuda", [])] + [
            ("rocm", str(v)) for v in spec.get("rocm", [])
        ]
        for family, version in runtimes:
            for plat in data["platforms"]:
                if plat not in data[family][version].get("platforms", data["platforms"]):
                    reason = f"no {family} {version} build of torch for {plat}"
                    pruned[reason] = pruned.get(reason, 0) + 1
                    continue
                found.append(
                    Published(
                        torch=TorchMinor.parse(str(torch_minor)),
                        family=family,
                        version=CudaVersion.parse(version),
                        platform=plat,
                        pythons=pythons,
                    )
                )
    return found, pruned


def _stable_key(build: Published) -> tuple[str, int, int, str]:
    """One stable-ABI wheel per CUDA major (build minor <= runtime minor), per exact ROCm minor."""
    minor = build.version.minor if build.family == "rocm" else -1
    return build.family, build.version.major, minor, build.platform


def expand(data: dict[str, Any], only: dict[str, str] | None = None) -> Expansion:
    """The collapsed cells: every build torch publishes from the stable-ABI target on is served by one
    stable-ABI cell per (CUDA major | ROCm minor, platform); older torches, and runtimes left out of
    stable_abi.runtimes, get a cell per torch. Every compiled wheel is cp310-abi3: no Python axis."""
    builds, pruned = published(data)
    stable = data.get("stable_abi") or {}
    target = TorchMinor.parse(str(stable["target"])) if stable else None
    families = set(stable.get("runtimes", [])) if stable else set()
    groups: dict[tuple[str, int, int, str], list[Published]] = {}
    cells: list[Cell] = []
    for build in builds:
        if target is not None and build.family in families and build.torch >= target:
            groups.setdefault(_stable_key(build), []).append(build)
        else:
            for abi in data.get("cxx11_abi", [True]):
                cells.append(_cell(data, [build], build, bool(abi), stable_target=None))
    for members in groups.values():
        oldest = min(
            members, key=lambda b: (b.version, b.torch)
        )  # oldest runtime minor, then torch
        cells.append(_cell(data, members, oldest, True, stable_target=target))
    abis = len(data.get("cxx11_abi", [True]))
    kept = [c for c in cells if not only or _matches(c, only)]
    if len(kept) < len(cells):
        pruned["filtered out by --only"] = len(cells) - len(kept)
    ids = [c.id for c in kept]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"matrix.yaml: cells with the same id: {', '.join(twice[:5])}")
    return Expansion(
        cells=tuple(sorted(kept, key=lambda c: c.id)),
        pruned=pruned,
        pure_triton_wheel=bool(data.get("pure_triton_wheel", True)),
        uncollapsed=sum(len(b.pythons) * abis for b in builds),
    )


def _cell(
    data: dict[str, Any],
    members: list[Published],
    build: Published,
    abi: bool,
    *,
    stable_target: TorchMinor | None,
) -> Cell:
    """The job that builds ``build``'s wheel, serving every one of ``members``."""
    family, plat = build.family, build.platform
    spec = data[family][_key(data[family], build.version)]
    arch, runner = PLATFORMS[plat]
    runtime = Runtime.CUDA if family == "cuda" else Runtime.ROCM
    variant = Variant(
        runtime,
        build.version,
        stable_target or build.torch,
        abi,
        stable_abi=stable_target is not None,
    )
    abi_arg = "--abi stable" if stable_target else "--abi torch"
    if family == "cuda":
        archs = ";".join(
            Arch.parse(a).capability + ("+PTX" if a == spec.get("ptx") else "")
            for a in spec["archs"]
        )
        runtime_tag, index = build.version.tag, knowledge.pytorch_index_for(build.version)
        toolkit = f"cuda-toolkit-{build.version.major}-{build.version.minor}"
        ptx = f" --ptx {spec['ptx']}" if spec.get("ptx") else ""
        build_args = f"--recipe cuda --arch {','.join(spec['archs'])}{ptx} {abi_arg}"
    else:
        archs = ";".join(spec["archs"])
        build_args = f"--recipe rocm --arch {','.join(spec['archs'])} {abi_arg}"
        runtime_tag = f"rocm{build.version}"
        index, toolkit = f"https://download.pytorch.org/whl/{runtime_tag}", f"rocm-{build.version}"
    python = min(build.pythons, key=lambda p: tuple(int(x) for x in p.split(".")))
    return Cell(
        id=f"{plat}-{variant}",
        python=python,
        torch=str(build.torch),
        runtime=runtime_tag,
        platform=plat,
        variant=str(variant),
        abi="stable" if stable_target else "torch",
        torches=" ".join(sorted({str(m.torch) for m in members}, key=TorchMinor.parse)),
        runtimes=" ".join(sorted({str(m.version) for m in members}, key=CudaVersion.parse)),
        pythons=" ".join(sorted({p for m in members for p in m.pythons}, key=_py_key)),
        archs=archs,
        cibw_build=f"cp{python.replace('.', '')}-{plat}",
        cibw_archs=arch,
        runner=runner,
        torch_index=index,
        toolkit=toolkit,
        build_args=build_args,
    )


def _key(table: dict[str, Any], version: CudaVersion) -> str:
    """The matrix.yaml key ("12.6", "7.1") of a runtime version."""
    return next(k for k in table if CudaVersion.parse(str(k)) == version)


def _py_key(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _matches(cell: Cell, only: dict[str, str]) -> bool:
    """A cell matches what it serves: torch=2.12 keeps the stable-ABI cells built on 2.10."""
    cuda = cell.runtime.startswith("cu")
    values = {
        "torch": cell.torches.split(),
        "python": cell.pythons.split(),
        "platform": [cell.platform],
        "cuda": cell.runtimes.split() if cuda else [],
        "rocm": cell.runtimes.split() if not cuda else [],
        "runtime": [cell.runtime],
    }
    return all(v in values.get(k, []) for k, v in only.items())


def parse_only(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in ("torch", "python", "platform", "cuda", "rocm", "runtime"):
            raise ConfigError(
                f"--only {text!r}: expected key=value pairs over torch, python, platform, cuda, rocm",
                fix="e.g. --only torch=2.11,cuda=13.0",
            )
        out[key.strip()] = value.strip()
    return out


def check_stable_target(data: dict[str, Any], recipe_targets: dict[str, TorchMinor | None]) -> None:
    """matrix.yaml's stable_abi.target must be the target the recipes build with (`fa-dist build
    --abi stable`), or the cells' variants would name wheels the builds do not make."""
    stable = data.get("stable_abi")
    if not stable:
        return
    target = TorchMinor.parse(str(stable["target"]))
    for family in stable.get("runtimes", []):
        built = recipe_targets.get(family)
        if built != target:
            raise ConfigError(
                f"matrix.yaml: stable_abi.target is {target}, recipes/{family}.toml builds stable-ABI "
                f"wheels for {built or 'no target (stable_abi_target unset)'}",
                fix=f"set both to the same torch: stable_abi.target in matrix.yaml and "
                f"stable_abi_target in recipes/{family}.toml",
            )


def check_against_recipes(data: dict[str, Any], recipe_archs: dict[str, tuple[Arch, ...]]) -> None:
    """Every arch the matrix asks of a toolkit must be one the kernels are written for (recipes/)."""
    for family in ("cuda", "rocm"):
        allowed = {str(a) for a in recipe_archs.get(family, ())}
        for version, spec in data.get(family, {}).items():
            extra = [a for a in spec.get("archs", []) if str(Arch.parse(str(a))) not in allowed]
            if extra:
                raise ConfigError(
                    f"matrix.yaml: {family}.{version}.archs: {', '.join(map(str, extra))} "
                    f"not in recipes/{family}.toml ({', '.join(sorted(allowed))})"
                )
