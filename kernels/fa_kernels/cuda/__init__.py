"""The compiled backend: Python side of the ops registered by fa_kernels._C."""
