"""fa_kernels' Triton kernels. Imported at the first Triton call, which is when the precompiled kernels
for this Triton and GPU (if the package has any) are copied into Triton's cache: see
fa_kernels.precompiled."""

from fa_kernels import precompiled

precompiled.ensure_seeded()
