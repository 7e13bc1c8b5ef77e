"""What a shared object links and defines, read from its ELF headers without loading it.

Loading a suspect extension is what crashes; reading its dynamic section and dynamic symbol table is
safe, needs no binutils, and works on bytes taken straight out of a wheel. ELF64 little-endian only
(x86_64, aarch64: every platform fa-dist builds for).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_DYNAMIC = 6
SHT_DYNSYM = 11
DT_NEEDED = 1
SHN_UNDEF = 0

# section header: name type flags addr offset size link info addralign entsize
_SECTION = struct.Struct("<IIQQQQIIQQ")
_SYMBOL = struct.Struct("<IBBHQQ")  # name info other shndx value size
_DYN = struct.Struct("<qQ")  # tag value


@dataclass(frozen=True, kw_only=True)
class DynamicInfo:
    needed: tuple[str, ...]  # DT_NEEDED: the shared libraries the loader must find
    defined: frozenset[str]  # dynamic symbols this object defines itself (mangled names)


@dataclass(frozen=True)
class _Section:
    type: int
    offset: int
    size: int
    link: int


def read_dynamic(data: bytes) -> DynamicInfo | None:
    """The NEEDED list and defined dynamic symbols of an ELF64 LE object; None if it is not one."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shentsize != _SECTION.size or shoff + shnum * shentsize > len(data):
        return None
    sections = [_section(data, shoff + i * shentsize) for i in range(shnum)]
    try:
        return DynamicInfo(needed=_needed(data, sections), defined=_defined(data, sections))
    except (struct.error, IndexError, UnicodeDecodeError):
        return None  # truncated or corrupt: not something to judge


def _section(data: bytes, at: int) -> _Section:
    _name, kind, _flags, _addr, offset, size, link, _info, _align, _entsize = _SECTION.unpack_from(
        data, at
    )
    return _Section(type=kind, offset=offset, size=size, link=link)


def _string(data: bytes, table: _Section, index: int) -> str:
    start = table.offset + index
    end = data.index(b"\0", start, table.offset + table.size)
    return data[start:end].decode()


def _needed(data: bytes, sections: list[_Section]) -> tuple[str, ...]:
    names: list[str] = []
    for sec in (s for s in sections if s.type == SHT_DYNAMIC):
        strings = sections[sec.link]
        for at in range(sec.offset, sec.offset + sec.size, _DYN.size):
            tag, value = _DYN.unpack_from(data, at)
            if tag == DT_NEEDED:
                names.append(_string(data, strings, value))
    return tuple(names)


def _defined(data: bytes, sections: list[_Section]) -> frozenset[str]:
    names: set[str] = set()
    for sec in (s for s in sections if s.type == SHT_DYNSYM):
        strings = sections[sec.link]
        for at in range(sec.offset + _SYMBOL.size, sec.offset + sec.size, _SYMBOL.size):
            name, _info, _other, shndx, _value, _size = _SYMBOL.unpack_from(data, at)
            if shndx != SHN_UNDEF and name:
                names.add(_string(data, strings, name))
    return frozenset(names)
