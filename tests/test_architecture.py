"""The shape of fa_dist/, checked from the source: imports only point down the stages, the import
graph from cli.py is at most 8 layers deep, no command pipeline imports another, no long functions."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fa_dist"
# higher imports lower, never the reverse; modules not named here are base files (rank 0)
RANKS = {
    "fa_dist.__main__": 9,
    "fa_dist.cli": 8,
    "fa_dist": 7,  # the library API
    "fa_dist.output": 6,
    "fa_dist.pipelines": 5,
    "fa_dist.act": 4,
    "fa_dist.decide": 3,
    "fa_dist.facts": 2,
    "fa_dist.model": 1,
}
MAX_LAYERS = 8
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


@functools.cache
def imports(name: str) -> frozenset[str]:
    """The fa_dist modules ``name`` imports at run time (lazy imports included; imports under
    ``if TYPE_CHECKING:`` are annotations only, not dependencies)."""
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fa_dist"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fa_dist"))
    return frozenset(found & MODULES.keys() - {name})


def rank(name: str) -> int:
    if name in RANKS:
        return RANKS[name]
    stage = ".".join(name.split(".")[:2])
    return RANKS.get(stage, 0) if stage != "fa_dist" else 0


@functools.cache
def depth(name: str) -> int:
    """Modules on the longest import chain from ``name`` down (itself included)."""
    return 1 + max((depth(d) for d in imports(name)), default=0)


def test_nothing_imports_upward() -> None:
    upward = [
        f"{name} -> {dep}"
        for name in MODULES
        for dep in imports(name)
        if rank(dep) > rank(name) and not name.endswith("__init__")
    ]
    assert upward == []


def test_import_graph_from_cli_is_at_most_8_layers() -> None:
    # depth() would not end on a cycle; the rank test above rules cycles between stages out
    assert depth("fa_dist.cli") <= MAX_LAYERS, depth("fa_dist.cli")


def test_no_command_pipeline_imports_another_except_through_plan_and_run() -> None:
    """Install may use build's plan and run (values in, values out); nothing else crosses."""
    commands = {n for n in MODULES if n.startswith("fa_dist.pipelines.")}
    crossing = {(n, d) for n in commands for d in imports(n) if d in commands}
    assert crossing <= {("fa_dist.pipelines.install", "fa_dist.pipelines.build")}
    tree = ast.parse(MODULES["fa_dist.pipelines.install"].read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "build_pipeline"
    }
    assert used <= {"plan", "run"}, used


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


WRITES = {"tempfile", "shutil", "mkstemp", "write_text", "write_bytes", "mkdir", "unlink", "rename"}


def test_decide_writes_no_files() -> None:
    """decide/ is pure: what it makes (e.g. the compat wheel's bytes), act/ writes."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}"
        for module, path in MODULES.items()
        if module.startswith("fa_dist.decide")
        for node in ast.walk(ast.parse(path.read_text()))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else
            [node.attr] if isinstance(node, ast.Attribute) else []
        )
        if name in WRITES
    ]
    assert found == []
