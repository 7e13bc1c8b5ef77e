"""matrix.yaml -> the list of wheel-building cells, with the reasons impossible cells were pruned.

Validation names the line, the key and what was expected, and suggests the key you probably meant.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fa_dist import knowledge, matrix_values, safeyaml
from fa_dist.errors import ConfigError, ParseError
from fa_dist.variant import Runtime, TorchMinor, Variant
from fa_dist.versions import Arch, CudaVersion

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
}
TORCH_KEYS: dict[str, type] = {"python": list, "cuda": list, "rocm": list}
RUNTIME_KEYS: dict[str, type] = {"archs": list, "ptx": str, "platforms": list}
PLATFORMS = {
    "manylinux_x86_64": ("x86_64", "ubuntu-24.04"),
    "manylinux_aarch64": ("aarch64", "ubuntu-24.04-arm"),
}


@dataclass(frozen=True, kw_only=True)
class Cell:
    id: str
    python: str
    torch: str
    runtime: str  # "cu130" or "rocm6.4"
    platform: str
    variant: str
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


def load(path: Path) -> dict[str, Any]:
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


def _parse(where: str, lines: dict[str, int], key: str, parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except ParseError as exc:
        raise _err(where, lines, key, exc.message) from None


def expand(data: dict[str, Any], only: dict[str, str] | None = None) -> Expansion:
    cells: list[Cell] = []
    pruned: dict[str, int] = {}

    def prune(reason: str) -> None:
        pruned[reason] = pruned.get(reason, 0) + 1

    for torch_minor, spec in sorted(
        data["torch"].items(), key=lambda kv: TorchMinor.parse(str(kv[0]))
    ):
        runtimes = [("cuda", str(v)) for v in spec.get("cuda", [])] + [
            ("rocm", str(v)) for v in spec.get("rocm", [])
        ]
        for py in data["python"]:
            if py not in spec.get("python", data["python"]):
                prune(f"torch {torch_minor} has no wheel for Python {py}")
                continue
            for family, version in runtimes:
                rt_spec = data[family][version]
                for plat in data["platforms"]:
                    if plat not in rt_spec.get("platforms", data["platforms"]):
                        prune(f"no {family} {version} build of torch for {plat}")
                        continue
                    for abi in data.get("cxx11_abi", [True]):
                        cell = _cell(
                            str(torch_minor), py, family, version, rt_spec, plat, bool(abi)
                        )
                        if only and not _matches(cell, only):
                            prune("filtered out by --only")
                            continue
                        cells.append(cell)
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"matrix.yaml: cells with the same id: {', '.join(twice[:5])}")
    return Expansion(
        cells=tuple(cells),
        pruned=pruned,
        pure_triton_wheel=bool(data.get("pure_triton_wheel", True)),
    )


def _cell(
    torch_minor: str, py: str, family: str, version: str, spec: dict[str, Any], plat: str, abi: bool
) -> Cell:
    tag = "cp" + py.replace(".", "")
    arch, runner = PLATFORMS[plat]
    if family == "cuda":
        cuda = CudaVersion.parse(version)
        variant = Variant(Runtime.CUDA, cuda, TorchMinor.parse(torch_minor), abi)
        archs = ";".join(
            Arch.parse(a).capability + ("+PTX" if a == spec.get("ptx") else "")
            for a in spec["archs"]
        )
        runtime, index = cuda.tag, knowledge.pytorch_index_for(cuda)
        toolkit = f"cuda-toolkit-{cuda.major}-{cuda.minor}"
        ptx = f" --ptx {spec['ptx']}" if spec.get("ptx") else ""
        build_args = f"--recipe cuda --arch {','.join(spec['archs'])}{ptx}"
    else:
        rocm = CudaVersion.parse(version)
        variant = Variant(Runtime.ROCM, rocm, TorchMinor.parse(torch_minor), abi)
        archs = ";".join(spec["archs"])
        build_args = f"--recipe rocm --arch {','.join(spec['archs'])}"
        runtime, index, toolkit = (
            f"rocm{version}",
            f"https://download.pytorch.org/whl/rocm{version}",
            f"rocm-{version}",
        )
    build = f"{tag}-{plat}"
    return Cell(
        # the old C++ ABI gets its own id (as its index does), so both ABIs' artifacts can coexist
        id=f"{build}-{runtime}-torch{torch_minor}" + ("" if abi else "-abi0"),
        python=py,
        torch=torch_minor,
        runtime=runtime,
        platform=plat,
        variant=str(variant),
        archs=archs,
        cibw_build=build,
        cibw_archs=arch,
        runner=runner,
        torch_index=index,
        toolkit=toolkit,
        build_args=build_args,
    )


def _matches(cell: Cell, only: dict[str, str]) -> bool:
    cuda = str(CudaVersion.parse(cell.runtime)) if cell.runtime.startswith("cu") else ""
    values = {
        "torch": cell.torch,
        "python": cell.python,
        "platform": cell.platform,
        "cuda": cuda,
        "rocm": cell.runtime[4:] if cell.runtime.startswith("rocm") else "",
        "runtime": cell.runtime,
    }
    return all(values.get(k) == v for k, v in only.items())


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
