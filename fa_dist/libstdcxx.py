"""Which libstdc++ a compiled extension gets, and refusing the one that crashes (issue #10).

torch links an extension with $CXX (else c++/g++). A GCC built without a shared libstdc++ (some images
set CXX=/opt/gcc/bin/g++) links libstdc++.a into the extension: it then carries a private C++ runtime
next to the system one torch uses, and a TORCH_CHECK whose message formats a number dies with SIGSEGV
inside the private std::ostream instead of raising. Facts here (compilers, installed ELF files), pure
decisions (which compiler to build with, whether a binary carries the static runtime), and the check of
a finished wheel.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fa_dist import elf, subproc
from fa_dist.environment import CxxCompiler, ExtensionLink, PackageInfo
from fa_dist.host import HostView

# libstdc++ symbols an extension linked against the shared runtime leaves undefined; defining any of
# them means a static copy is inside (mangled name -> what to show)
RUNTIME_MARKERS = {
    "__cxa_throw": "__cxa_throw",
    "__cxa_allocate_exception": "__cxa_allocate_exception",
    "_ZNSo9_M_insertIlEERSoT_": "std::ostream::_M_insert<long>",
    "_ZNSt6locale7classicEv": "std::locale::classic()",
}

# -- facts -------------------------------------------------------------------------------------


def compilers(view: HostView) -> tuple[tuple[CxxCompiler, ...] | None, str | None]:
    """The C++ compiler the build would link with ($CXX, else g++ / c++ on PATH) first, then the others
    on PATH, each with the libstdc++.so it would link (``-print-file-name`` prints a bare name when
    the toolchain has none)."""
    wanted = [(view.env["CXX"], "CXX")] if view.env.get("CXX") else []
    wanted += [("g++", "PATH"), ("c++", "PATH")]
    found: list[CxxCompiler] = []
    seen: set[str] = set()
    for name, source in wanted:
        path = name if os.path.isabs(name) else view.which(name)
        if not path or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        out = subproc.run([path, "-print-file-name=libstdc++.so"], timeout=20)
        if not out.ok:
            continue
        printed = out.stdout.strip()
        shared = printed if os.path.isabs(printed) and Path(printed).exists() else None
        found.append(CxxCompiler(path=path, source=source, libstdcxx=shared, cc=_c_sibling(path)))
    if not found:
        return None, "no working C++ compiler (CXX, g++ or c++)"
    return tuple(found), None


def _c_sibling(cxx: str) -> str | None:
    """gcc next to g++ (x86_64-linux-gnu-g++-12 -> x86_64-linux-gnu-gcc-12), cc next to c++."""
    folder, name = os.path.split(cxx)
    for cxx_part, c_part in (("g++", "gcc"), ("c++", "cc"), ("clang++", "clang")):
        if cxx_part in name:
            candidate = os.path.join(folder, name.replace(cxx_part, c_part))
            return candidate if os.path.isfile(candidate) else None
    return None


def installed_extensions(packages: Iterable[PackageInfo]) -> tuple[ExtensionLink, ...]:
    """fa_kernels' compiled modules as installed, read as ELF files (importing one could crash)."""
    links = []
    for pkg in packages:
        if pkg.name != "fa-kernels" or not pkg.location:
            continue
        for path in sorted(Path(pkg.location, "fa_kernels").glob("_C*.so")):
            try:
                info = elf.read_dynamic(path.read_bytes())
            except OSError:
                continue
            if info is not None:
                links.append(
                    ExtensionLink(
                        path=str(path), needed=info.needed, runtime_defined=runtime_defined(info)
                    )
                )
    return tuple(links)


# -- decisions (pure) --------------------------------------------------------------------------


def runtime_defined(info: elf.DynamicInfo) -> tuple[str, ...]:
    return tuple(shown for symbol, shown in RUNTIME_MARKERS.items() if symbol in info.defined)


def static_runtime_evidence(needed: Iterable[str], defined: Iterable[str]) -> str | None:
    """Why a binary carries its own libstdc++ (None when it links the shared one)."""
    defined = tuple(defined)
    if not defined:
        return None
    needs = any(n.startswith("libstdc++.so") for n in needed)
    return f"defines {', '.join(defined)} itself" + (
        "" if needs else " and has no NEEDED libstdc++.so.6 (libstdc++ was linked statically)"
    )


@dataclass(frozen=True, kw_only=True)
class CxxChoice:
    """The compiler a source build links with: overrides for the build environment, a note saying
    what was decided, or the problem that makes every candidate unusable."""

    overrides: dict[str, str] = field(default_factory=dict)
    note: str = ""
    problem: str | None = None


def describe(compiler: CxxCompiler) -> str:
    where = f"{compiler.path} (from {compiler.source})"
    if compiler.libstdcxx:
        return f"{where} links the shared {compiler.libstdcxx}"
    return f"{where}: -print-file-name=libstdc++.so finds no shared library (static libstdc++ only)"


def choose(candidates: tuple[CxxCompiler, ...]) -> CxxChoice:
    if not candidates:
        return CxxChoice()  # no compiler at all: the host-compiler check says so
    default = candidates[0]
    if default.libstdcxx:
        return CxxChoice(note=f"C++ compiler: {describe(default)}")
    alternative = next((c for c in candidates[1:] if c.libstdcxx), None)
    if alternative is None:
        return CxxChoice(
            problem=f"{describe(default)}; no other C++ compiler with a shared libstdc++ on PATH"
        )
    overrides = {"CXX": alternative.path}
    if alternative.cc:
        overrides["CC"] = alternative.cc
    return CxxChoice(
        overrides=overrides,
        note=f"C++ compiler: {describe(default)}, which would put a private libstdc++ into the "
        f"extension (its errors crash instead of raising); building with "
        f"{' '.join(f'{k}={v}' for k, v in overrides.items())} instead ({alternative.libstdcxx})",
    )


def fix_for(candidates: tuple[CxxCompiler, ...]) -> str:
    """The command that points the build at a compiler with a shared libstdc++."""
    alternative = next((c for c in candidates[1:] if c.libstdcxx), None)
    if alternative is None:
        return "apt-get install g++ && unset CXX CC (or export CXX=g++ CC=gcc)"
    cc = f" CC={alternative.cc}" if alternative.cc else ""
    return f"export CXX={alternative.path}{cc} (or unset CXX CC)"


# -- the finished wheel ------------------------------------------------------------------------


def wheel_problem(wheel: Path) -> str | None:
    """Why a built wheel's extension must not be installed (it carries a static libstdc++), or None."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if not (name.endswith(".so") or ".so." in name):
                    continue
                info = elf.read_dynamic(archive.read(name))
                if info is None:
                    continue
                evidence = static_runtime_evidence(info.needed, runtime_defined(info))
                if evidence:
                    return f"{name} {evidence}"
    except (OSError, zipfile.BadZipFile) as exc:
        return f"cannot read {wheel.name}: {exc}"
    return None
