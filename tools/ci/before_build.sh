#!/usr/bin/env bash
# cibuildwheel before-build, once per Python: the cell's torch (never another one), ninja, fa-dist
# itself, then `fa-dist build --write-config` so the wheel cibuildwheel builds has exactly the name and
# build metadata `fa-dist build` gives locally.
set -euo pipefail
python -m pip install "torch==${FA_TORCH}.*" --index-url "$FA_TORCH_INDEX"
python -m pip install ninja setuptools wheel "$FA_PROJECT"
python -m fa_dist build --python "$(command -v python)" $FA_BUILD_ARGS --write-config /tmp/fa-kernels-build.json
