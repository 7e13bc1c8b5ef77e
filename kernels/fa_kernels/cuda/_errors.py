"""Python exception types for the compiled ops' errors.

torch's stable ABI carries a C++ exception out of a kernel only as std::runtime_error, which torch raises
as RuntimeError; csrc/ops.cpp names the intended kind in the message ("fa_kernels ValueError: x must
be ..."), and ``call`` raises that kind again: bad arguments surface as ValueError / TypeError, as they
did when the glue used ATen's TORCH_CHECK_VALUE / TORCH_CHECK_TYPE.
"""

from __future__ import annotations

import re
from typing import Any

import torch

_KIND = re.compile(r"fa_kernels (ValueError|TypeError): (.*)", re.DOTALL)
_TYPES: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}


def typed(error: RuntimeError) -> Exception | None:
    """The ValueError / TypeError an op's RuntimeError stands for, or None for any other error."""
    match = _KIND.search(str(error))
    return _TYPES[match[1]](match[2]) if match else None


def call(op: Any, *args: Any) -> Any:
    """``op(*args)``, with a tagged RuntimeError raised as its own kind. Under torch.compile the op is
    called as is: tracing sees no try/except, and a traced graph runs the op outside Python anyway."""
    if torch.compiler.is_compiling():
        return op(*args)
    try:
        return op(*args)
    except RuntimeError as exc:
        kind = typed(exc)
        if kind is None:
            raise
        raise kind from None
