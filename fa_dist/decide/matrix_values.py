"""The values of matrix.yaml that YAML's typing gets wrong silently: an unquoted ``3.10`` is the float
3.1, an unquoted ``2.10:`` key the torch 2.1, ``"false"`` a true string. Each problem is (key, message);
matrix.validate reports the first with its line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

PYTHON = re.compile(r"3\.\d{1,2}")
VERSION = re.compile(r"\d{1,3}\.\d{1,3}")


def _quote_hint(value: Any) -> str:
    if isinstance(value, float):
        return f' (YAML read {value!r} as a number: quote versions, e.g. "3.10")'
    return ""


def _versions(
    key: str, values: Any, pattern: re.Pattern[str], what: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(values, list):
        yield key, f"expected a list of {what}s"
        return
    for value in values:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            yield key, f"{value!r} is not a quoted {what}{_quote_hint(value)}"
    if len(set(map(str, values))) != len(values):
        yield key, "lists a value twice"


def problems(data: dict[str, Any], platforms: list[str]) -> Iterator[tuple[str, str]]:
    yield from _versions("python", data["python"], PYTHON, 'Python version like "3.12"')
    abi = data.get("cxx11_abi", [True])
    if not abi or not all(isinstance(a, bool) for a in abi):
        yield "cxx11_abi", f"expected a list of true/false, got {abi!r}"
    elif len(set(abi)) != len(abi):
        yield "cxx11_abi", "lists a value twice"
    for minor, spec in data["torch"].items():
        key = f"torch.{minor}"
        if not isinstance(minor, str) or not VERSION.fullmatch(minor):
            yield (
                key,
                f'the torch version {minor!r} must be a quoted string like "2.11"'
                + _quote_hint(minor),
            )
        if isinstance(spec, dict):
            if "python" in spec:
                yield from _versions(f"{key}.python", spec["python"], PYTHON, "Python version")
            for family in ("cuda", "rocm"):
                if family in spec:
                    yield from _versions(
                        f"{key}.{family}", spec[family], VERSION, f"{family} version"
                    )
    for family in ("cuda", "rocm"):
        for version, spec in (data.get(family) or {}).items():
            yield from _runtime(f"{family}.{version}", version, spec, platforms)


def _runtime(key: str, version: Any, spec: Any, platforms: list[str]) -> Iterator[tuple[str, str]]:
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        yield (
            key,
            f'the version {version!r} must be a quoted string like "13.0"' + _quote_hint(version),
        )
    if not isinstance(spec, dict):
        return
    archs = spec.get("archs", [])
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        yield f"{key}.archs", "expected a list of arch names like sm_90"
        return
    if len(set(archs)) != len(archs):
        yield f"{key}.archs", "lists an arch twice"
    ptx = spec.get("ptx")
    if ptx is not None and ptx not in archs:
        yield f"{key}.ptx", f"{ptx!r} is not one of this toolkit's archs ({', '.join(archs)})"
    for plat in spec.get("platforms", []) if isinstance(spec.get("platforms"), list) else []:
        if plat not in platforms:
            yield f"{key}.platforms", f"{plat!r} is not one of {', '.join(platforms)}"
