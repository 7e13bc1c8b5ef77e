"""Fixture environments: real snapshots, and broken variants made from them one change at a time."""

from __future__ import annotations

import dataclasses
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

from fa_dist.model.environment import Environment

FIXTURES = Path(__file__).parent / "fixtures"
# what a target venv must not see of the test environment: fa-dist's own packages, and pip (its own)
OURS = ("fa_kernels", "fa-kernels", "fa_dist", "fa-dist", "__editable__", "pip")


def shared_venv(root: Path, hide: tuple[str, ...] = OURS) -> Path:
    """A venv at ``root/venv`` whose site-packages links every package this interpreter sees (torch and
    triton without a second 1 GB install) except names starting with ``hide`` and .pth files; its
    python. Every site folder counts, those a .pth file added (a shared base venv) too."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    shadow = root / "shared-site"
    shadow.mkdir()
    folders = dict.fromkeys([*site.getsitepackages(), *(p for p in sys.path if p.endswith("site-packages"))])
    for folder in folders:
        for entry in Path(folder).iterdir():
            if entry.name.lower().startswith(hide) or entry.suffix == ".pth" or (shadow / entry.name).exists():
                continue
            (shadow / entry.name).symlink_to(entry)
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    (site_dir / "zz_shared.pth").write_text(f"{shadow}\n")
    return venv / "bin" / "python"


def load(name: str) -> Environment:
    return Environment.load(FIXTURES / "envs" / f"{name}.json")


def H100() -> Environment:
    return load("h100-torch2.11-cu130")


def CPU() -> Environment:
    return load("cpu-torch2.13")


def mutate(env: Any, **changes: Any) -> Any:
    """``mutate(env, torch__cuda=None, env_vars={...})``: '__' walks into nested dataclasses."""
    direct = {k: v for k, v in changes.items() if "__" not in k}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        if "__" in key:
            head, rest = key.split("__", 1)
            nested.setdefault(head, {})[rest] = value
    for head, sub in nested.items():
        direct[head] = mutate(getattr(env, head), **sub)
    return dataclasses.replace(env, **direct)


def with_env_vars(env: Environment, **values: str) -> Environment:
    return mutate(env, env_vars={**env.env_vars, **values})
