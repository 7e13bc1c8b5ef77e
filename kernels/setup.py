"""Builds the pure-Triton package by default; with FA_KERNELS_BUILD_CONFIG (written by `fa-dist build`
from a recipe) it also compiles the CUDA extension with torch's ninja build and bakes the build
metadata into fa_kernels/_build_info.json, which `fa-dist doctor` reads without importing anything."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CONFIG = os.environ.get("FA_KERNELS_BUILD_CONFIG")


class BuildPyWithInfo(build_py):
    """Writes the build metadata next to the package's modules in the wheel."""

    def run(self) -> None:
        super().run()
        if CONFIG:
            info = json.loads(Path(CONFIG).read_text())["build_info"]
            target = Path(self.build_lib) / "fa_kernels" / "_build_info.json"
            target.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def version() -> str:
    """fa_kernels.__version__, plus the build variant as local version (+cu130torch2.11cxx11abiTRUE)."""
    if CONFIG:
        return json.loads(Path(CONFIG).read_text())["version"]
    text = (HERE / "fa_kernels" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert match, "fa_kernels/__init__.py has no __version__"
    return match[1]


def extensions_and_commands() -> tuple[list, dict]:
    if not CONFIG:
        return [], {"build_py": BuildPyWithInfo}
    config = json.loads(Path(CONFIG).read_text())
    if not config.get("sources"):  # a pure build that still records its metadata
        return [], {"build_py": BuildPyWithInfo}
    for key, value in config.get("env", {}).items():  # the arch list, jobs and CUDA_HOME of the plan
        os.environ.setdefault(key, value)
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    class IncrementalBuildExt(BuildExtension.with_options(use_ninja=True)):  # type: ignore[misc]
        """Objects and ninja's state in a folder that outlives the build: a rebuild is incremental."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.build_temp = config["build_temp"]

    ext = CUDAExtension(
        name=config["name"],
        sources=list(config["sources"]),  # relative to this folder, as setuptools requires
        include_dirs=[str(HERE / d) for d in config.get("include_dirs", [])],
        extra_compile_args={"cxx": config.get("cxx_flags", []), "nvcc": config.get("device_flags", [])},
        # the limited API: torch adds -DPy_LIMITED_API=0x030A0000 and leaves libtorch_python out
        py_limited_api=bool(config.get("py_limited_api")),
    )
    return [ext], {"build_py": BuildPyWithInfo, "build_ext": IncrementalBuildExt}


def options() -> dict:
    """bdist_wheel --py-limited-api cp310: the wheel is tagged cp310-abi3 (any CPython >= 3.10)."""
    limited = json.loads(Path(CONFIG).read_text()).get("py_limited_api") if CONFIG else None
    return {"bdist_wheel": {"py_limited_api": limited}} if limited else {}


ext_modules, cmdclass = extensions_and_commands()
setup(version=version(), ext_modules=ext_modules, cmdclass=cmdclass, options=options())
