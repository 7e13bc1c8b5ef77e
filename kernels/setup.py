"""Builds the pure-Triton package by default; with FA_KERNELS_BUILD_CONFIG (written by `fa-dist build`
from a recipe) it also compiles the CUDA extension with torch's ninja build and bakes the build
metadata into fa_kernels/_build_info.json, which `fa-dist doctor` reads without importing anything."""

from __future__ import annotations

import json
import os
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


def extensions_and_commands() -> tuple[list, dict]:
    if not CONFIG:
        return [], {"build_py": BuildPyWithInfo}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    config = json.loads(Path(CONFIG).read_text())
    ext = CUDAExtension(
        name=config["name"],
        sources=[str(HERE / s) for s in config["sources"]],
        include_dirs=[str(HERE / d) for d in config.get("include_dirs", [])],
        extra_compile_args={"cxx": config.get("cxx_flags", []), "nvcc": config.get("device_flags", [])},
    )
    return [ext], {"build_py": BuildPyWithInfo, "build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions_and_commands()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
