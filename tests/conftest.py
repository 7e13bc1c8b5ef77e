"""Unit tests may not touch the outside world; tests marked `integration` may (real processes)."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@functools.cache
def _gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _gpu_visible():
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU visible (run on a GPU machine: nox -s gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _own_facts_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own fa-dist cache: facts cached by one test (a fake torch) never answer another."""
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path_factory.mktemp("fa-dist-cache")))


@pytest.fixture(autouse=True)
def _seal_outside_world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("gpu"):
        yield
        return
    if "kernels" in request.node.path.parts and _gpu_visible():  # Triton runs ptxas to compile on a GPU
        yield
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unit test touched the outside world: {args[:1]!r}; mark it integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
