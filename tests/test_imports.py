"""The import graph of every module in src/meshauth: no module imports itself back, however indirectly.

Imports are read from the source with ``ast``, so the graph counts the ones a run may never execute:
inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import meshauth

ROOT = Path(meshauth.__file__).parent

# Cycles still being removed on another branch, each named by its modules. An entry here must keep
# matching a real cycle: once the cycle is gone the test below fails until the entry is dropped.
KNOWN_CYCLES: list[frozenset[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Every meshauth module ``path`` imports: at the top, inside functions, under TYPE_CHECKING."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # ``from meshauth.policy import registry`` imports the submodule ``registry``; a name that
            # is not a module is an edge to the package (its __init__) only.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(n for n in names if n in modules)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module: each is one or more import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        # Tarjan's algorithm, iterative (no recursion limit to meet on a deep chain).
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_cycle_finder_reports_cycles() -> None:
    """The checker itself finds indirect cycles, separately, and nothing in an acyclic graph."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(_cycles(graph), key=sorted) == [frozenset("abc"), frozenset("de")]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_reads_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """An import inside a function or under TYPE_CHECKING is an edge like a top-level one."""
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from meshauth.config import Settings\n"
        "def f():\n    from meshauth.policy import registry\n    from . import stores\n"
    )
    modules = {"meshauth.config", "meshauth.policy", "meshauth.policy.registry", "meshauth.policy.stores"}
    assert _imports(source, "meshauth.policy.m", modules) == modules


def test_no_import_cycle_in_meshauth() -> None:
    """No meshauth module imports itself back, counting function-level and TYPE_CHECKING imports."""
    graph = _graph()
    assert len(graph) > 100
    assert [sorted(c) for c in _cycles(graph) if c not in KNOWN_CYCLES] == []


def test_known_cycles_are_still_cycles() -> None:
    """An exception above is dropped as soon as its cycle is gone, so it cannot hide a new one."""
    cycles = _cycles(_graph())
    assert [sorted(c) for c in KNOWN_CYCLES if c not in cycles] == []
