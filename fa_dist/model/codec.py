"""JSON <-> frozen dataclasses, driven by type hints.

Value types (anything with a ``parse`` classmethod) travel as their text form; enums as their value;
tuples as lists. ``decode(cls, encode(x)) == x`` for every value the model holds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any, TypeVar, Union

from fa_dist.errors import ConfigError

T = TypeVar("T")


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(type(value), "parse"):
            return str(value)
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Any, where: str = "$") -> T:
    return typing.cast(T, _decode(cls, data, where))


def _decode(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, data, where)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        _expect(data, list, where)
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        _expect(data, dict, where)
        return {
            _decode(key_t, k, where): _decode(val_t, v, f"{where}.{k}") for k, v in data.items()
        }
    if isinstance(tp, type) and hasattr(tp, "parse"):
        _expect(data, str, where)
        return tp.parse(data)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(data)
        except ValueError:
            raise ConfigError(f"{where}: {data!r} is not one of {[m.value for m in tp]}") from None
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, where)
    if tp is Any:
        return data
    if tp is float and isinstance(data, int):
        return float(data)
    _expect(data, tp, where)
    return data


def _decode_dataclass(tp: Any, data: Any, where: str) -> Any:
    _expect(data, dict, where)
    hints = typing.get_type_hints(tp)
    known = {f.name for f in dataclasses.fields(tp)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} for {tp.__name__}")
    kwargs = {name: _decode(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return tp(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _expect(data: Any, tp: type, where: str) -> None:
    if (tp is int and isinstance(data, bool)) or not isinstance(data, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(data).__name__} {data!r}")
