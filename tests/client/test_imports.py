"""The client package's import graph has no cycle, counting its ``__init__`` as a module and
function-level and TYPE_CHECKING imports as edges."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import meshauth.client

PACKAGE = "meshauth.client"
ROOT = Path(meshauth.client.__file__).parent


def _module(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path) -> set[str]:
    modules = {_module(p) for p in ROOT.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from meshauth.client import _metrics`` imports the package (its __init__) first.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(n for n in names if n in modules)
    found.discard(_module(path))
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in ROOT.glob("*.py")}


def test_the_checker_finds_a_cycle() -> None:
    """graphlib reports a cycle, so a clean run below means something."""
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_client_package_has_no_import_cycle() -> None:
    """No client module imports itself back, however indirectly (the __init__ included)."""
    graph = _graph()
    assert PACKAGE in graph and len(graph) > 15
    graphlib.TopologicalSorter(graph).prepare()


def test_no_module_is_over_300_lines() -> None:
    """Modules stay small (STYLE.md): one noun each."""
    long = {p.name: n for p in ROOT.glob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}
