"""Build recipes are data (recipes/*.toml): which sources make which extension, with which flags, for
which archs and which minimum torch/runtime. Loading validates everything and names the file, the key
and what was expected."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from fa_dist import paths
from fa_dist.errors import ConfigError, ParseError
from fa_dist.model.versions import Arch, CudaVersion, TorchMinor

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class Kind(Enum):
    CUDA = "cuda"
    ROCM = "rocm"
    TRITON = "triton"


@dataclass(frozen=True, kw_only=True)
class Extension:
    name: str
    sources: tuple[str, ...]
    include_dirs: tuple[str, ...] = ()
    cxx_flags: tuple[str, ...] = ()
    device_flags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    kind: Kind
    description: str
    min_torch: TorchMinor
    min_runtime: CudaVersion | None
    # the oldest torch a stable-ABI build serves (TORCH_TARGET_VERSION); None: torch-specific builds only
    stable_abi_target: TorchMinor | None
    archs: tuple[Arch, ...]
    extension: Extension | None
    path: Path

    @property
    def compiled(self) -> bool:
        return self.extension is not None


_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "recipe": {
        "name": str,
        "kind": str,
        "description": str,
        "min_torch": str,
        "min_runtime": str,
        "stable_abi_target": str,
    },
    "extension": {
        "name": str,
        "sources": list,
        "include_dirs": list,
        "cxx_flags": list,
        "device_flags": list,
    },
    "archs": {"supported": list},
}
_REQUIRED = {
    "recipe": ("name", "kind", "description", "min_torch"),
    "extension": ("name", "sources"),
    "archs": ("supported",),
}


def load(path: Path, *, source_root: Path | None = None) -> Recipe:
    """Read and validate one recipe; ``source_root`` (the kernels/ folder) makes missing sources an error."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _check_shape(path, data)
    meta = data["recipe"]
    kind = _enum(path, "recipe.kind", meta["kind"])
    compiled = kind is not Kind.TRITON
    for table in ("extension", "archs"):
        if compiled and table not in data:
            raise ConfigError(f"{path}: [{table}] is required for kind = {kind.value!r}")
        if not compiled and table in data:
            raise ConfigError(
                f"{path}: [{table}] makes no sense for kind = 'triton' (nothing is compiled)"
            )
    extension = _extension(path, data["extension"], source_root) if compiled else None
    archs = (
        tuple(
            _parse(path, f"archs.supported[{i}]", Arch.parse, a)
            for i, a in enumerate(_strings(path, "archs.supported", data["archs"]["supported"]))
        )
        if compiled
        else ()
    )
    families = {a.family.value for a in archs}
    expected = {"sm"} if kind is Kind.CUDA else {"gfx"} if kind is Kind.ROCM else set()
    if compiled and families != expected:
        raise ConfigError(
            f"{path}: archs.supported must list only {'sm_XX' if kind is Kind.CUDA else 'gfxNNN'} "
            f"archs for kind = {kind.value!r}"
        )
    return Recipe(
        name=meta["name"],
        kind=kind,
        description=meta["description"],
        min_torch=_parse(path, "recipe.min_torch", TorchMinor.parse, meta["min_torch"]),
        min_runtime=_parse(path, "recipe.min_runtime", CudaVersion.parse, meta["min_runtime"])
        if "min_runtime" in meta
        else None,
        stable_abi_target=_parse(
            path, "recipe.stable_abi_target", TorchMinor.parse, meta["stable_abi_target"]
        )
        if "stable_abi_target" in meta
        else None,
        archs=archs,
        extension=extension,
        path=path,
    )


def load_all(folder: Path | None = None, *, source_root: Path | None = None) -> dict[str, Recipe]:
    """Every recipe in ``folder`` (default: the ones `fa-dist build` uses, see paths.recipes_dir)."""
    folder = folder if folder is not None else paths.recipes_dir()
    recipes: dict[str, Recipe] = {}
    for path in sorted(folder.glob("*.toml")):
        recipe = load(path, source_root=source_root)
        if recipe.name in recipes:
            raise ConfigError(
                f"{path}: recipe name {recipe.name!r} already used by {recipes[recipe.name].path}"
            )
        recipes[recipe.name] = recipe
    if not recipes:
        raise ConfigError(
            f"no recipes in {folder}",
            fix="reinstall fa-dist (its wheel and sdist bundle the recipes), or run it from a "
            "source checkout",
        )
    return recipes


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    for table, value in data.items():
        if table not in _SCHEMA:
            raise ConfigError(
                f"{path}: unknown table [{table}] (expected one of {', '.join(_SCHEMA)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {table} must be a table")
        for key, item in value.items():
            want = _SCHEMA[table].get(key)
            if want is None:
                raise ConfigError(
                    f"{path}: unknown key {table}.{key} (expected one of "
                    f"{', '.join(_SCHEMA[table])})"
                )
            if not isinstance(item, want):
                raise ConfigError(
                    f"{path}: {table}.{key} must be a {_type_name(want)}, got {item!r}"
                )
        for key in _REQUIRED[table]:
            if key not in value:
                raise ConfigError(f"{path}: missing key {table}.{key}")
    if "recipe" not in data:
        raise ConfigError(f"{path}: missing table [recipe]")


def _type_name(want: type | tuple[type, ...]) -> str:
    return "string" if want is str else "list" if want is list else str(want)


def _extension(path: Path, table: dict[str, Any], source_root: Path | None) -> Extension:
    sources = _strings(path, "extension.sources", table["sources"])
    if not sources:
        raise ConfigError(f"{path}: extension.sources must name at least one file")
    if source_root is not None:
        for src in sources:
            if not (source_root / src).is_file():
                raise ConfigError(
                    f"{path}: extension.sources names {src!r}, which is not in {source_root}"
                )
    return Extension(
        name=table["name"],
        sources=sources,
        include_dirs=_strings(path, "extension.include_dirs", table.get("include_dirs", [])),
        cxx_flags=_strings(path, "extension.cxx_flags", table.get("cxx_flags", [])),
        device_flags=_strings(path, "extension.device_flags", table.get("device_flags", [])),
    )


def _strings(path: Path, key: str, value: list[Any]) -> tuple[str, ...]:
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{path}: {key}[{i}] must be a string, got {item!r}")
    return tuple(value)


def _enum(path: Path, key: str, value: str) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise ConfigError(
            f"{path}: {key} = {value!r}: expected one of {', '.join(repr(k.value) for k in Kind)}"
        ) from None


def _parse(path: Path, key: str, parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except ParseError as exc:
        raise ConfigError(f"{path}: {key}: {exc.message}") from None
