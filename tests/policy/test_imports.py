"""The policy package's import graph: no module imports itself back, however indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

import meshauth.policy

PACKAGE = "meshauth.policy"
ROOT = Path(meshauth.policy.__file__).parent


def _imports(path: Path, module: str) -> set[str]:
    """Every policy module ``path`` imports: at the top, inside functions, under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            # ``from meshauth.policy import rsgi`` imports the submodule ``rsgi``.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(
            n for n in names if n.startswith(PACKAGE + ".") and (ROOT / f"{n[len(PACKAGE) + 1 :]}.py").exists()
        )
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    return {f"{PACKAGE}.{p.stem}": _imports(p, f"{PACKAGE}.{p.stem}") for p in ROOT.glob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        if start in done:
            continue
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
                on_path.add(child)
    return None


def test_cycle_finder_reports_a_cycle() -> None:
    """The checker itself finds an indirect cycle (so an empty answer below means something)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_policy_package_has_no_import_cycle() -> None:
    """No policy module imports itself back, counting function-level and TYPE_CHECKING imports."""
    graph = _graph()
    assert len(graph) > 10
    assert _cycle(graph) is None
