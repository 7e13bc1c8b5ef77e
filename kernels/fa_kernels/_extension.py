"""The compiled extension, looked up once. Its own module so that backend.py (which picks an
implementation and imports fa_kernels.cuda.* to run it) and fa_kernels.cuda.* (which need to know
whether the extension loaded) both import it, and neither imports the other."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def cuda_extension() -> Any | None:
    """The compiled extension, if this build has one that loads. Cached: every op call asks, and a
    failing import searches the path each time (hundreds of microseconds a decoding step)."""
    try:
        from fa_kernels import _C  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _C
