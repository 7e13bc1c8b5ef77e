"""fa-dist: FlashAttention-class kernels that install in seconds and are verified on your GPU."""

__version__ = "0.1.0"
