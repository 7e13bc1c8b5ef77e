"""The CUDA kernels compile with plain nvcc (no torch headers) for the archs the recipe promises, so a
change that breaks compilation fails CI here, where nvcc exists and no GPU does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fa_dist.decide import recipes

pytestmark = pytest.mark.integration
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_kernel_sources_compile_for_sm80_and_sm90(tmp_path: Path) -> None:
    recipe = recipes.load_all(source_root=KERNELS)["cuda"]
    assert recipe.extension is not None
    kernels = [s for s in recipe.extension.sources if s.endswith(".cu")]
    assert kernels, "the cuda recipe lists no .cu file"
    for source in kernels:
        out = tmp_path / (Path(source).stem + ".o")
        done = subprocess.run(
            ["nvcc", "-std=c++17", *recipe.extension.device_flags,
             *(f"-I{KERNELS / d}" for d in recipe.extension.include_dirs), "-gencode=arch=compute_80,code=sm_80",
             "-gencode=arch=compute_90,code=sm_90", "-c", str(KERNELS / source), "-o", str(out)],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert out.stat().st_size > 10_000
