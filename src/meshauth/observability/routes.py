"""Request paths as metric labels: the route template a path matched, never the raw path.

A label value is one of the service's route templates (``/admin/users/{username}``), a prefix it
routes whole (``/ext_authz``), or ``other``: a flood of distinct paths cannot grow the label set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.routing import compile_path

OTHER = "other"
MAX_CACHED_PATHS = 4096  # exact paths remembered with their label; past this, matched on every request


class RouteLabels:
    """``labels(path)`` → the label for ``path``: exact templates by dict, parametrised ones by regex."""

    def __init__(self, templates: Iterable[str], *, prefixes: Iterable[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        self._cache: dict[str, str] = {}
        for template in dict.fromkeys(templates):
            if "{" in template:
                regex, _format, _convertors = compile_path(template)
                self._patterns.append((regex, template))
            else:
                self._cache[template] = template
        self.labels = frozenset([*self._cache.values(), *(t for _, t in self._patterns), *self.prefixes, OTHER])

    def __call__(self, path: str) -> str:
        label = self._cache.get(path)
        if label is not None:
            return label
        label = self._match(path)
        if len(self._cache) < MAX_CACHED_PATHS:
            self._cache[path] = label
        return label

    def _match(self, path: str) -> str:
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        for regex, template in self._patterns:
            if regex.match(path):
                return template
        return OTHER


def templates_of(app: object) -> list[str]:
    """The route templates of a Starlette app, or of one an app object wraps (``.router``, ``.app``)."""
    found: list[str] = []
    seen: set[int] = set()
    todo = [app]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for route in getattr(current, "routes", None) or ():
            path = getattr(route, "path", None)
            if isinstance(path, str):
                found.append(path)
        todo += [getattr(current, attr) for attr in ("router", "app") if getattr(current, attr, None) is not None]
    return list(dict.fromkeys(found))
