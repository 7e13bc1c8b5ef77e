"""flash_attn's API on fa-kernels: fa-dist's flash-attn compat, NOT the upstream FlashAttention.

`fa-dist install --flash-attn-compat` generated this package (distribution ``flash-attn``, version
``<flash_attn API>+fakernels.<fa-kernels version>``) so that code written for flash_attn, and tools
that require the flash-attn distribution (transformers' ``attn_implementation="flash_attention_2"``),
run on fa-kernels. Names resolve on first use (see flash_attn._fa_kernels);
`fa-dist uninstall --flash-attn-compat` removes it.
"""

from __future__ import annotations

from typing import Any

from flash_attn._version import FA_KERNELS_BUILT_FOR, FLASH_ATTN_API, __version__

INTERFACE = (
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
)
__all__ = ["FA_KERNELS_BUILT_FOR", "FLASH_ATTN_API", "__version__", *INTERFACE]


def __getattr__(name: str) -> Any:
    if name not in INTERFACE:
        raise AttributeError(f"module 'flash_attn' has no attribute {name!r}")
    from flash_attn import flash_attn_interface

    value = getattr(flash_attn_interface, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(INTERFACE))
