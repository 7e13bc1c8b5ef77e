#!/usr/bin/env bash
# cibuildwheel before-all, inside the manylinux_2_28 (AlmaLinux 8) container: the toolkit of this
# matrix cell ($FA_TOOLKIT: cuda-toolkit-13-0 or rocm-6.4) from the vendor's dnf repository.
set -euo pipefail
arch=$(uname -m)
case "$FA_TOOLKIT" in
  cuda-toolkit-*)
    repo_arch=$([ "$arch" = aarch64 ] && echo sbsa || echo x86_64)
    dnf config-manager --add-repo "https://developer.download.nvidia.com/compute/cuda/repos/rhel8/${repo_arch}/cuda-rhel8.repo"
    dnf install -y "$FA_TOOLKIT"
    ;;
  rocm-*)
    version=${FA_TOOLKIT#rocm-}
    printf '[rocm]\nname=ROCm\nbaseurl=https://repo.radeon.com/rocm/el8/%s/main\nenabled=1\ngpgcheck=0\n' "$version" \
      > /etc/yum.repos.d/rocm.repo
    dnf install -y rocm-hip-sdk
    ;;
  *) echo "unknown FA_TOOLKIT=$FA_TOOLKIT" >&2; exit 2 ;;
esac
