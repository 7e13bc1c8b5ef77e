"""Who the flash-attn compat is: its distribution name, version scheme and marker file. Values only,
read by the detector (is an installed flash-attn ours?), doctor's checks and the installer; the
decisions and the wheel are in decide/compat.py."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from fa_dist.errors import ConfigError
from fa_dist.model.environment import PackageInfo

# The flash_attn API level mirrored: 2.8.3 is the newest FlashAttention-2 release and the one whose
# signatures fa_kernels follows (softcap, block_table in varlen, the unpad_input that returns five
# values); it satisfies every `flash-attn>=x` a library asks for (transformers wants >= 2.3.3) and
# makes transformers use bottom-right causal masks (>= 2.1), which is what fa_kernels computes.
API_VERSION = "2.8.3"
DIST = "flash-attn"
LOCAL_TAG = "fakernels"  # version = API_VERSION + "+fakernels." + fa-kernels' public version
PROVIDER = "fa-dist flash-attn compat"
MARKER = "flash_attn/_fa_dist_compat.json"  # read by doctor's probe without importing anything
SMOKE_MODULE = "flash_attn._fa_dist_smoke"
# what doctor's probe imports: only this compat has it, and it imports neither torch nor fa_kernels
PROBE_MODULES = ("flash_attn._fa_kernels",)


def version_for(fa_kernels_version: str) -> str:
    """``2.8.3+fakernels.0.1.0`` for fa-kernels ``0.1.0`` (its build variant is left out)."""
    try:
        public = Version(fa_kernels_version).public
    except InvalidVersion:
        raise ConfigError(f"fa-kernels version {fa_kernels_version!r} is not a version") from None
    return f"{API_VERSION}+{LOCAL_TAG}.{public}"


def is_compat_version(version: str) -> bool:
    try:
        local = Version(version).local or ""
    except InvalidVersion:
        return False
    return local.startswith(f"{LOCAL_TAG}.")


def is_compat(pkg: PackageInfo) -> bool:
    """Whether an installed flash-attn is this compat (its marker file says so) and not upstream's."""
    return pkg.name == DIST and pkg.build_info.get("provider") == PROVIDER
