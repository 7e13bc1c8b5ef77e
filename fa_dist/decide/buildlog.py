"""Why a build failed, from its log: a pure classifier over the text, with the fix for each cause."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Cause:
    id: str
    title: str
    fix: str
    lines: tuple[str, ...]  # the log lines that show it


# (id, pattern, title, fix); the first match in this order wins, most specific first.
CAUSES: tuple[tuple[str, str, str, str], ...] = (
    (
        "cuda-mismatch",
        r"detected CUDA version \(([\d.]+)\) mismatches the version that was used to compile",
        "nvcc's CUDA major differs from the one torch was built with",
        "install the CUDA toolkit matching torch.version.cuda and point CUDA_HOME at it (fa-dist doctor names it)",
    ),
    (
        "gcc-too-new",
        r"unsupported GNU version! gcc versions later than (\d+)",
        "the host GCC is newer than this nvcc accepts",
        "install an older g++ and select it: export CC=gcc-N CXX=g++-N (N = the version in the error)",
    ),
    (
        "oom-killed",
        r"^Killed$|died due to signal 9|signal 9 \(Kill signal\)|internal compiler error: Killed",
        "a compiler process was killed (out of memory)",
        "build with fewer parallel jobs: fa-dist build --jobs 1 (or a smaller MAX_JOBS), or free memory",
    ),
    (
        "cxx-standard",
        r"C\+\+\d+ or later compatible compiler is required",
        "a -std= flag older than torch's headers need",
        "drop -std=... from the recipe's cxx_flags/device_flags: torch.utils.cpp_extension sets the right one",
    ),
    (
        "ninja-missing",
        r"Ninja is required to load C\+\+ extensions",
        "ninja is missing",
        "python -m pip install ninja",
    ),
    (
        "unsupported-arch",
        r"Unsupported gpu architecture '([\w]+)'",
        "nvcc cannot target a requested GPU arch",
        "drop that arch (--arch) or use a toolkit that supports it (fa-dist doctor lists the toolkit's archs)",
    ),
    (
        "missing-header",
        r"fatal error: ([\w./+-]+): No such file or directory",
        "a header is missing",
        "install the package that provides it (CUDA toolkit headers: cuda-toolkit / cuda-cudart-dev; Python.h: python3-dev)",
    ),
    (
        "cuda-not-found",
        r"CUDA was not found on the system|CUDA_HOME environment variable is not set",
        "torch cannot find the CUDA toolkit",
        "export CUDA_HOME=/usr/local/cuda-X.Y (the toolkit matching torch)",
    ),
)


def classify(log: str, *, context: int = 1) -> Cause | None:
    """The first known cause in ``log`` with the lines around its first match, or None."""
    lines = log.splitlines()
    for cause_id, pattern, title, fix in CAUSES:
        regex = re.compile(pattern, re.MULTILINE)
        for i, line in enumerate(lines):
            m = regex.search(line)
            if m:
                shown = tuple(ln.rstrip() for ln in lines[max(0, i - context) : i + context + 1])
                return Cause(
                    id=cause_id, title=title, fix=_specific_fix(cause_id, m, fix), lines=shown
                )
    return None


# headers of the CUDA math libraries, which minimal toolkits (nvcc + cudart) leave out
CUDA_LIBRARY_HEADERS = re.compile(
    r"^(cublas|cusparse|cusolver|curand|cufft|nvjitlink|cudnn)\w*\.h$", re.I
)


def _specific_fix(cause_id: str, match: re.Match[str], fix: str) -> str:
    if cause_id == "missing-header" and CUDA_LIBRARY_HEADERS.match(match[1]):
        return (
            f"{match[1]} belongs to a CUDA math library this toolkit lacks: install its headers "
            "(NVIDIA's apt repo: cuda-libraries-dev-X-Y) for the toolkit in CUDA_HOME"
        )
    if cause_id == "missing-header":
        return f"{match[1]} is missing: {fix}"
    return fix


def tail(log: str, n: int = 20) -> tuple[str, ...]:
    """The last lines of a log, for a failure no pattern knows."""
    return tuple(log.rstrip().splitlines()[-n:])
