"""YAML from a file fa-dist does not control, loaded safely: bounded size, UTF-8 only, safe types only,
and the node tree walked once with a budget before anything is built, so an alias bomb or a recursive
anchor is an error instead of gigabytes or a RecursionError. Gives the data and each key's line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fa_dist.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_NODES = 20_000  # node visits, aliases counted each time they are used
MAX_DEPTH = 64


def load(path: Path) -> tuple[Any, dict[str, int]]:
    """(data, {key path: 1-based line}); ConfigError for anything that is not a small, plain YAML file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes, more than the {MAX_BYTES} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{path}: empty")
        lines = _Walk(path).lines(node)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    finally:
        loader.dispose()
    return data, lines


class _Walk:
    """Key path -> line over the node tree, refusing cycles, depth and too many node visits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.visits = 0
        self.out: dict[str, int] = {}

    def lines(self, node: yaml.Node) -> dict[str, int]:
        self._visit(node, "", ())
        return self.out

    def _visit(self, node: yaml.Node, key: str, stack: tuple[int, ...]) -> None:
        self.visits += 1
        if self.visits > MAX_NODES:
            raise ConfigError(
                f"{self.path}: more than {MAX_NODES} values once aliases are expanded "
                "(an alias bomb?)"
            )
        if id(node) in stack:
            raise ConfigError(f"{self.path}:{node.start_mark.line + 1}: a recursive alias")
        if len(stack) > MAX_DEPTH:
            raise ConfigError(f"{self.path}:{node.start_mark.line + 1}: nested too deeply")
        self.out.setdefault(key or "$", node.start_mark.line + 1)
        inner = (*stack, id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = f"{key}.{k.value}" if key else str(k.value)
                self.out.setdefault(sub, k.start_mark.line + 1)
                self._visit(k, sub + "(key)", inner)
                self._visit(v, sub, inner)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._visit(item, key, inner)
