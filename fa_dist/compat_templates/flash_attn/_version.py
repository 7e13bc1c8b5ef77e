# placeholder: `fa-dist install --flash-attn-compat` writes the real values (fa_dist/decide/compat.py)
__version__ = "0+template"
FLASH_ATTN_API = "0"
FA_KERNELS_BUILT_FOR = "0"
