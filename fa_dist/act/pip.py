"""pip, the one way fa-dist puts a wheel into the target: --no-deps (torch and triton are never
touched), --no-index (only the file given), in the target interpreter itself."""

from __future__ import annotations

from pathlib import Path

from fa_dist import subproc


def pip_install(python: str, wheel: Path) -> subproc.Completed:
    return subproc.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--force-reinstall",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        timeout=600,
    )
