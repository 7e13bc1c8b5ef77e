"""Crafted fa-kernels wheels for hostile-input tests: a tiny package whose smoke test does what the
test wants (pass, print garbage, sleep, check its own files), built as a real zip with a RECORD."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from fa_dist.act.wheelpatch import record_line

CASE = {"op": "attention fwd+bwd", "backend": "triton", "shape": "b1", "dtype": "fp16", "max_err": 0.0,
        "tolerance": 0.001, "speed": "-", "passed": True, "error": ""}


def result(version: str, passed: bool = True) -> str:
    """A well-formed smoke result line."""
    return json.dumps({"passed": passed, "device": "cpu", "fa_kernels": version, "torch": "",
                       "backends": ["triton"], "cases": [{**CASE, "passed": passed}]})


def passing_smoke(version: str, *, sleep: float = 0.0, own_version_check: bool = False) -> str:
    """A smoke module that (optionally) sleeps, optionally checks that the installed package on disk is
    still this version (a second install must not change files under a running smoke test), then passes."""
    check = ""
    if own_version_check:
        check = (
            "import importlib.metadata as m, fa_kernels, pathlib\n"
            f"assert m.version('fa-kernels') == {version!r}, m.version('fa-kernels')\n"
            "text = (pathlib.Path(fa_kernels.__file__).parent / '__init__.py').read_text()\n"
            f"assert {version!r} in text, text\n"
        )
    return (
        "import sys, time\n"
        "print('smoke: pass attention fwd+bwd triton b1 (crafted)', file=sys.stderr, flush=True)\n"
        f"time.sleep({sleep})\n{check}"
        f"print({result(version)!r})\n"
    )


def printing_smoke(stdout: str, code: int = 0) -> str:
    return f"import sys\nsys.stdout.write({stdout!r})\nsys.exit({code})\n"


def craft(folder: Path, version: str, smoke: str, *, meta_version: str | None = None,
          script: bool = False) -> Path:
    """fa_kernels-VERSION-py3-none-any.whl in ``folder``; METADATA says ``meta_version`` (default the
    same); ``script`` adds a console-script-like file under .data/scripts (installed into bin/)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"fa_kernels-{version}.dist-info"
    files: dict[str, bytes] = {
        "fa_kernels/__init__.py": f"__version__ = {version!r}\n".encode(),
        "fa_kernels/smoke.py": smoke.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: fa-kernels\nVersion: {meta_version or version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: wheelcraft\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if script:
        files[f"fa_kernels-{version}.data/scripts/fa-kernels-smoke"] = (
            f"#!python\nprint('fa-kernels-smoke {version}')\n".encode())
    record = [record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    path = folder / f"fa_kernels-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path
