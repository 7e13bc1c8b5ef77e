"""Kernel tests: on a machine without a GPU they run the Triton kernels under the CPU interpreter.

TRITON_INTERPRET must be set before triton decorates the kernels, i.e. before fa_kernels is imported.
"""

from __future__ import annotations

import os
import shutil

import pytest

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["FA_KERNELS_POISON"] = "1"  # every kernel output starts as NaN: unwritten elements show

torch = pytest.importorskip("torch")


@pytest.fixture
def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernels: fa_kernels correctness tests")
