"""Issue #10's build side: a compiler with only a static libstdc++ is detected, avoided or refused, and
an extension that carries its own libstdc++ is recognised from its ELF (built, in a wheel, installed)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from fa_dist import build_plan, checks, elf, libstdcxx, recipes
from fa_dist.environment import CxxCompiler, ExtensionLink
from fa_dist.errors import EnvironmentBroken
from fa_dist.host import HostView

from .envs import H100

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
RECIPES = recipes.load_all(source_root=KERNELS)

STATIC_ONLY = CxxCompiler(path="/opt/gcc/bin/g++", source="CXX", libstdcxx=None, cc="/opt/gcc/bin/gcc")
SYSTEM = CxxCompiler(path="/usr/bin/g++", source="PATH",
                     libstdcxx="/usr/lib/gcc/x86_64-linux-gnu/13/libstdc++.so", cc="/usr/bin/gcc")


def h100_with(*compilers: CxxCompiler, extensions: tuple[ExtensionLink, ...] = ()):  # type: ignore[no-untyped-def]
    return dataclasses.replace(H100(), cxx_compilers=compilers, extensions=extensions)


def plan(env):  # type: ignore[no-untyped-def]
    recipe = RECIPES["cuda"]
    build_plan.refuse_if_blocked(env, recipe)
    return build_plan.plan(env, recipe, arch_request="native", jobs_override=None, kernel_version="0.1.0",
                           source_digest="abc")


# -- decisions on data -------------------------------------------------------------------------

def test_a_static_only_cxx_is_replaced_by_one_with_a_shared_libstdcxx_and_the_plan_says_so() -> None:
    p = plan(h100_with(STATIC_ONLY, SYSTEM))
    assert p.build_env["CXX"] == "/usr/bin/g++" and p.build_env["CC"] == "/usr/bin/gcc"
    (note,) = [n for n in p.notes if n.startswith("C++ compiler:")]
    assert "/opt/gcc/bin/g++ (from CXX)" in note and "static libstdc++ only" in note
    assert "CXX=/usr/bin/g++ CC=/usr/bin/gcc" in note


def test_a_good_default_compiler_is_kept() -> None:
    p = plan(h100_with(SYSTEM))
    assert "CXX" not in p.build_env and "CC" not in p.build_env
    assert any("links the shared /usr/lib/gcc" in n for n in p.notes)


def test_no_compiler_with_a_shared_libstdcxx_blocks_source_builds_before_compiling() -> None:
    env = h100_with(STATIC_ONLY)
    (finding,) = [f for f in checks.run_checks(env) if f.id == "cxx-runtime"]
    assert finding.severity is checks.Severity.ERROR and checks.Route.SOURCE in finding.blocks
    assert "SIGSEGV" in finding.why and finding.fix and "CXX" in finding.fix
    with pytest.raises(EnvironmentBroken, match="cxx-runtime"):
        plan(env)
    with pytest.raises(EnvironmentBroken, match="shared libstdc"):  # the planner alone refuses too
        build_plan.plan(env, RECIPES["cuda"], arch_request="native", jobs_override=None,
                        kernel_version="0.1.0", source_digest="abc")


def test_doctor_warns_with_the_exact_fix_when_an_alternative_exists() -> None:
    (finding,) = [f for f in checks.run_checks(h100_with(STATIC_ONLY, SYSTEM)) if f.id == "cxx-runtime"]
    assert finding.severity is checks.Severity.WARNING and not finding.blocks
    assert finding.fix == "export CXX=/usr/bin/g++ CC=/usr/bin/gcc (or unset CXX CC)"
    assert "bare" in finding.evidence or "static libstdc++ only" in finding.evidence
    (ok,) = [f for f in checks.run_checks(h100_with(SYSTEM)) if f.id == "cxx-runtime"]
    assert ok.severity is checks.Severity.OK


def test_doctor_flags_an_installed_extension_that_carries_libstdcxx() -> None:
    bad = ExtensionLink(path="/site/fa_kernels/_C.so", needed=("libc10.so", "libc.so.6"),
                        runtime_defined=("__cxa_throw", "std::ostream::_M_insert<long>"))
    good = ExtensionLink(path="/site/fa_kernels/_C.so", needed=("libstdc++.so.6",), runtime_defined=())
    (finding,) = [f for f in checks.run_checks(h100_with(SYSTEM, extensions=(bad,)))
                  if f.id == "package-fa-kernels-runtime"]
    assert finding.severity is checks.Severity.ERROR
    assert "__cxa_throw" in finding.evidence and "no NEEDED libstdc++.so.6" in finding.evidence
    assert "uninstall -y fa-kernels" in (finding.fix or "")
    assert not [f for f in checks.run_checks(h100_with(SYSTEM, extensions=(good,)))
                if f.id == "package-fa-kernels-runtime"]


def test_snapshots_without_the_new_facts_still_load_and_decide_nothing() -> None:
    env = H100()
    assert env.cxx_compilers == () and env.extensions == ()
    assert libstdcxx.choose(()) == libstdcxx.CxxChoice()
    assert type(env).from_json(h100_with(STATIC_ONLY).to_json()).cxx_compilers == (STATIC_ONLY,)


def test_elf_reader_rejects_what_is_not_an_elf64_object() -> None:
    assert elf.read_dynamic(b"") is None
    assert elf.read_dynamic(b"#!/bin/sh\n" * 10) is None
    assert elf.read_dynamic(b"\x7fELF\x01\x01" + b"\0" * 64) is None  # ELF32


# -- real shared objects, compiled here with g++ ----------------------------------------------

SOURCE = """
#include <sstream>
#include <stdexcept>
#include <string>
std::string describe(long n) { std::ostringstream s; s << "got " << n; return s.str(); }
void check(long n) { if (n < 0) throw std::invalid_argument(describe(n)); }
"""


def _compile(tmp_path: Path, name: str, *flags: str) -> Path:
    src = tmp_path / "ext.cpp"
    src.write_text(SOURCE)
    out = tmp_path / name
    subprocess.run(["g++", "-shared", "-fPIC", "-O1", *flags, str(src), "-o", str(out)], check=True)
    return out


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ here")


@pytest.mark.integration
@needs_gxx
def test_real_objects_shared_vs_static_libstdcxx(tmp_path: Path) -> None:
    shared = elf.read_dynamic(_compile(tmp_path, "shared.so").read_bytes())
    static = elf.read_dynamic(_compile(tmp_path, "static.so", "-static-libstdc++").read_bytes())
    assert shared is not None and static is not None
    assert "libstdc++.so.6" in shared.needed and "_Z5checkl" in shared.defined
    assert libstdcxx.runtime_defined(shared) == ()
    assert "libstdc++.so.6" not in static.needed
    assert {"__cxa_throw", "std::ostream::_M_insert<long>"} <= set(libstdcxx.runtime_defined(static))
    evidence = libstdcxx.static_runtime_evidence(static.needed, libstdcxx.runtime_defined(static))
    assert evidence and "no NEEDED libstdc++.so.6" in evidence


@pytest.mark.integration
@needs_gxx
def test_wheel_check_and_installed_extension_read_real_objects(tmp_path: Path) -> None:
    for name, flags in (("good", ()), ("bad", ("-static-libstdc++",))):
        so = _compile(tmp_path, f"{name}.so", *flags)
        with zipfile.ZipFile(tmp_path / f"{name}.whl", "w") as whl:
            whl.write(so, "fa_kernels/_C.cpython-312-x86_64-linux-gnu.so")
            whl.writestr("fa_kernels/__init__.py", "")
        site = tmp_path / name / "site"
        (site / "fa_kernels").mkdir(parents=True)
        shutil.copy(so, site / "fa_kernels" / "_C.cpython-312-x86_64-linux-gnu.so")
    assert libstdcxx.wheel_problem(tmp_path / "good.whl") is None
    problem = libstdcxx.wheel_problem(tmp_path / "bad.whl")
    assert problem and problem.startswith("fa_kernels/_C.cpython-312") and "__cxa_throw" in problem
    from fa_dist.environment import ImportStatus, PackageInfo

    def pkg(name: str) -> PackageInfo:
        return PackageInfo(name="fa-kernels", version="0.1.0", location=str(tmp_path / name / "site"),
                           import_status=ImportStatus.OK)

    (bad,) = libstdcxx.installed_extensions([pkg("bad")])
    (good,) = libstdcxx.installed_extensions([pkg("good")])
    assert bad.runtime_defined and not good.runtime_defined and "libstdc++.so.6" in good.needed


@pytest.mark.integration
@needs_gxx
def test_detector_sees_a_static_only_cxx_and_the_system_gxx(tmp_path: Path) -> None:
    fake = tmp_path / "opt" / "bin"
    fake.mkdir(parents=True)
    for name in ("g++", "gcc"):  # a toolchain without libstdc++.so prints the bare name back
        (fake / name).write_text('#!/bin/sh\ncase "$1" in -print-file-name=*) echo "${1#*=}";; esac\n')
        (fake / name).chmod(0o755)
    system_dir = os.path.dirname(shutil.which("g++") or "")
    view = HostView(env={"PATH": system_dir, "CXX": str(fake / "g++")})
    found, why = libstdcxx.compilers(view)
    assert why is None and found is not None
    assert found[0] == CxxCompiler(path=str(fake / "g++"), source="CXX", libstdcxx=None, cc=str(fake / "gcc"))
    assert found[1].source == "PATH" and found[1].libstdcxx and Path(found[1].libstdcxx).exists()
    choice = libstdcxx.choose(found)
    assert choice.problem is None and choice.overrides["CXX"] == found[1].path
