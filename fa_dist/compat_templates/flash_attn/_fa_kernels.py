"""How this flash_attn reaches fa_kernels. This package is fa-dist's flash-attn compat layer, NOT the
upstream FlashAttention: `fa-dist install --flash-attn-compat` generated it from templates in fa-dist.

Each flash_attn module lists its public names, where fa_kernels keeps each one, and flash_attn's
signature for it. A name is looked up the first time it is used (a module ``__getattr__``, PEP 562),
so importing any flash_attn module costs nothing (not even torch) and works with whichever fa_kernels
is installed: a name fa_kernels has is handed out as is (fa_kernels mirrors flash_attn's API, so its
signature is flash_attn's, plus what fa_kernels adds); a name it lacks becomes a stand-in with
flash_attn's signature that raises NotImplementedError, naming fa-kernels and the missing piece,
when it is called.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

FIX = (
    "install an fa-kernels that provides it (`fa-dist install --flash-attn-compat`), or use the "
    "upstream flash-attn instead of this compat (`fa-dist uninstall --flash-attn-compat`, then "
    "install flash-attn)"
)
# set on every stand-in, to the fa_kernels name it stands in for (the smoke test lists them)
MISSING_MARK = "__fa_kernels_missing__"


class MissingInFaKernels(NotImplementedError):
    """A flash_attn name whose fa_kernels counterpart the installed fa-kernels does not have."""


def _fa_kernels() -> Any:
    try:
        return importlib.import_module("fa_kernels")
    except ImportError as exc:
        raise ImportError(
            "flash_attn here is fa-dist's compat layer over fa-kernels, and fa_kernels cannot be "
            f"imported ({type(exc).__name__}: {exc}); fix: fa-dist install --flash-attn-compat"
        ) from exc


def lookup(module: str, name: str) -> Any | None:
    """fa_kernels' ``module.name``, or None when this fa_kernels has no such module or name."""
    _fa_kernels()
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:  # an fa_kernels from before this module existed
            return None
        raise
    return getattr(found, name, None)


def require(module: str, name: str, public: str) -> Any:
    """Like lookup, for an adapter that cannot work without the name: absent, it says so."""
    found = lookup(module, name)
    if found is None:
        raise missing(public, f"{module}.{name}")
    return found


def missing(public: str, source: str) -> MissingInFaKernels:
    version = getattr(sys.modules.get("fa_kernels"), "__version__", "?")
    return MissingInFaKernels(
        f"{public} is not available: this flash_attn is fa-dist's compat layer over fa-kernels, "
        f"and the installed fa-kernels {version} has no {source}; fix: {FIX}"
    )


def stand_in(public: str, source: str, signature: Any) -> Any:
    """A function (or class) with ``signature``'s parameters that raises `missing` when used."""
    module, name = public.rsplit(".", 1)
    if inspect.isclass(signature):
        init = stand_in(f"{public}.__init__", source, signature.__init__)
        attrs = {"__init__": init, "__module__": module, "__doc__": signature.__doc__}
        return type(name, (), {**attrs, MISSING_MARK: source})

    @functools.wraps(signature)  # sets __wrapped__: inspect.signature shows flash_attn's parameters
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise missing(public.removesuffix(".__init__"), source)

    unavailable.__name__ = unavailable.__qualname__ = name
    unavailable.__module__ = module
    setattr(unavailable, MISSING_MARK, source)
    return unavailable


def export(
    module_name: str, source: str, signatures: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` handing out ``source``'s names (see the docstring
    above). The value is cached on the module: the lookup runs once per name."""
    module = sys.modules[module_name]

    def __getattr__(name: str) -> Any:
        if name not in signatures:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = lookup(source, name)
        if value is None:
            value = stand_in(f"{module_name}.{name}", f"{source}.{name}", signatures[name])
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(signatures))

    return __getattr__, __dir__
