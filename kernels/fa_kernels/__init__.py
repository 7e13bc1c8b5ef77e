"""fa_kernels: FlashAttention-class kernels with flash_attn's public API.

    from fa_kernels import flash_attn_func, rms_norm_fn, DropoutAddRMSNorm
"""

from fa_kernels.backend import available, get_backend, set_backend
from fa_kernels.flash_attn_interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
)
from fa_kernels.kvcache import flash_attn_with_kvcache
from fa_kernels.norm import DropoutAddRMSNorm, RMSNorm, layer_norm_fn, rms_norm_fn

__version__ = "0.1.0"

__all__ = [
    "DropoutAddRMSNorm",
    "RMSNorm",
    "available",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_with_kvcache",
    "get_backend",
    "layer_norm_fn",
    "rms_norm_fn",
    "set_backend",
]
