"""TypeError for the compiled ops' type errors.

An exception leaves a kernel on torch's stable ABI as a standard C++ exception, which torch raises by
kind: std::invalid_argument as ValueError, anything else as RuntimeError. No standard exception becomes
TypeError, so csrc/ops.cpp raises a type error as invalid_argument whose message starts with
"fa_kernels TypeError: ", and ``call`` raises it as TypeError: the public API keeps the kinds the ATen
glue had (TORCH_CHECK_VALUE / TORCH_CHECK_TYPE). A direct torch.ops.fa_kernels call sees ValueError.
"""

from __future__ import annotations

from typing import Any

import torch

TYPE_TAG = "fa_kernels TypeError: "


def typed(error: ValueError) -> TypeError | None:
    """The TypeError an op's ValueError stands for, or None when it is a plain ValueError."""
    text = str(error)
    return TypeError(text[len(TYPE_TAG) :]) if text.startswith(TYPE_TAG) else None


def call(op: Any, *args: Any) -> Any:
    """``op(*args)``, with a tagged type error raised as TypeError. Under torch.compile the op is called
    as is: tracing sees no try/except, and a traced graph runs the op outside Python anyway."""
    if torch.compiler.is_compiling():
        return op(*args)
    try:
        return op(*args)
    except ValueError as exc:
        kind = typed(exc)
        if kind is None:
            raise
        raise kind from None
