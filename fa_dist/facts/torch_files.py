"""torch's build facts read from its files, without importing it (importing takes seconds).

- version, CUDA, HIP, git commit: ``torch/version.py``, which torch's build writes as plain
  assignments (``__version__ = '2.13.0+cpu'``, ``cuda: Optional[str] = None``).
- the C++11 ABI (``_GLIBCXX_USE_CXX11_ABI``), first match wins:
  1. ``share/cmake/Torch/TorchConfig.cmake``: torch releases that still built both ABIs put
     ``-D_GLIBCXX_USE_CXX11_ABI=0|1`` into ``TORCH_CXX_FLAGS`` (later ones, all new-ABI, dropped it);
  2. ``lib/libc10.so``: the mangled name of ``c10::Error``'s constructor, which takes a
     ``std::string``, says ``std::__cxx11::basic_string`` under the new ABI and ``Ss`` under the old.
  Limits: a torch without either file (a Windows or macOS build, a stripped or vendored layout) gives
  None, and the answer of ``import torch`` (cached, see factcache) stands.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from fa_dist.facts import elf

VERSION_FIELDS = {"__version__": "version", "cuda": "cuda", "hip": "hip", "git_version": "git"}
_ASSIGNMENT = re.compile(r"^(\w+)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.MULTILINE)
_CMAKE_ABI = re.compile(r"-D_GLIBCXX_USE_CXX11_ABI=([01])")
_ERROR_CTOR = "_ZN3c105ErrorC"  # c10::Error::Error(...), complete or base object constructor


def parse_version_py(text: str) -> dict[str, str | None]:
    """The build facts of a ``torch/version.py``: only literal assignments count, nothing runs."""
    found: dict[str, str | None] = {}
    for name, value in _ASSIGNMENT.findall(text):
        if name not in VERSION_FIELDS:
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        if literal is None or isinstance(literal, str):
            found[VERSION_FIELDS[name]] = literal
    return found


def abi_from_cmake(text: str) -> bool | None:
    found = _CMAKE_ABI.search(text)
    return found[1] == "1" if found else None


def abi_from_c10(data: bytes) -> bool | None:
    """From libc10.so's exported c10::Error constructors; None when it has none (not such a lib)."""
    info = elf.read_dynamic(data)
    ctors = [s for s in info.defined if s.startswith(_ERROR_CTOR)] if info else []
    if not ctors:
        return None
    return any("St7__cxx11" in s for s in ctors)


def read(torch_dir: Path) -> dict[str, Any]:
    """What the files under ``torch_dir`` (the torch package folder) say; keys absent when unread."""
    facts: dict[str, Any] = {}
    try:
        facts.update(parse_version_py((torch_dir / "version.py").read_text(errors="replace")))
    except OSError:
        return facts
    abi, source = _abi(torch_dir)
    if abi is not None:
        facts.update(cxx11_abi=abi, cxx11_abi_source=source)
    return facts


def _abi(torch_dir: Path) -> tuple[bool | None, str]:
    cmake = torch_dir / "share/cmake/Torch/TorchConfig.cmake"
    try:
        abi = abi_from_cmake(cmake.read_text(errors="replace"))
    except OSError:
        abi = None
    if abi is not None:
        return abi, str(cmake)
    c10 = torch_dir / "lib/libc10.so"
    try:
        return abi_from_c10(c10.read_bytes()), str(c10)
    except OSError:
        return None, ""
