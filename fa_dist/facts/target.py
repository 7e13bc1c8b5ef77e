"""The environment a command looks at: a saved snapshot, or the facts of a target interpreter."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from fa_dist.errors import ConfigError
from fa_dist.facts.detect import detect
from fa_dist.model.environment import Environment
from fa_dist.options import Target


def resolve_python(python: str | None) -> str:
    """The target interpreter's absolute path (not resolved: a venv's python is a link that must stay
    one): ``python`` (a path, or a name on PATH), default this one. Absolute, because the smoke test
    and the precompile run it from a neutral folder."""
    if not python:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.access(found, os.X_OK) or Path(found).is_dir():
        raise ConfigError(
            f"--python {python}: no such executable",
            fix="pass the path of the target environment's python, e.g. .venv/bin/python",
        )
    return os.path.abspath(found)


def environment(target: Target, *, sdpa: bool = False) -> Environment:
    """Load the snapshot, or detect the target interpreter's environment (it runs the probe: under a
    second when the facts cache holds what needs ``import torch``, seconds when not; ``sdpa`` adds the
    torch SDPA probe, for doctor --attention and detect)."""
    if target.env_file is not None:
        if target.python:
            raise ConfigError(
                "--python and --env-file exclude each other",
                fix="drop one: a snapshot already names its interpreter",
            )
        return Environment.load(target.env_file)
    return detect(resolve_python(target.python), sdpa=sdpa, refresh=target.refresh)
