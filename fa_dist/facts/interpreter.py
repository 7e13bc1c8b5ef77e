"""Is the target a Python new enough for fa-kernels? Asked with a one-liner every Python since 2.6
runs (and no shell does), before the probe, whose own syntax needs Python 3.8."""

from __future__ import annotations

import re

from fa_dist import subproc
from fa_dist.errors import ProbeFailed

MINIMUM = (3, 10)
MARKER = "FA_DIST_PYTHON"
ASK = f"import sys; print('{MARKER} %d %d' % tuple(sys.version_info[:2]))"


def require(python: str) -> tuple[int, int]:
    """(major, minor) of ``python``; ProbeFailed (exit 4) when it is no Python or too old."""
    done = subproc.run([python, "-E", "-s", "-c", ASK], timeout=60)
    found = re.search(rf"^{MARKER} (\d+) (\d+)$", done.stdout, re.MULTILINE)
    if found is None:
        raise ProbeFailed(
            f"{python} is not a Python interpreter: {done.describe_failure()}",
            fix="pass --python the python of the target environment, e.g. .venv/bin/python",
        )
    version = (int(found[1]), int(found[2]))
    if version < MINIMUM:
        raise ProbeFailed(
            f"{python} is Python {version[0]}.{version[1]}: this Python is too old "
            f"(fa-kernels needs >= {MINIMUM[0]}.{MINIMUM[1]})",
            fix="create the environment with Python 3.10 or newer",
        )
    return version
