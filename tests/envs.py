"""Fixture environments: real snapshots, and broken variants made from them one change at a time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fa_dist.model.environment import Environment

FIXTURES = Path(__file__).parent / "fixtures"


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
