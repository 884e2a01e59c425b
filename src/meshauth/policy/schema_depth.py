"""How deep a schema's types nest once common types are resolved — bounded before the engine sees it.

Why: Cedar parses a value against its schema type recursively on the calling thread's stack, and a
stack overflow kills the worker. A schema whose type nests deeply (``Set<Set<…<Long>…>>``, or a flat
chain of common types ``type T1 = Set<T0>; type T2 = Set<T1>; …``) is accepted by the schema parser,
and then *one unauthenticated decision request* whose ``properties`` or ``context`` carries a value of
that type crashes the worker (measured with cedarpy 4.12: a resolved depth of ~14,000 crashed on an
8 MiB stack, 10,000 gave an error). The text nesting check (``source``) does not see either shape:
``<`` is not a bracket there, and an alias chain is flat text (and flat JSON).

So a schema's *resolved* type depth — ``Set`` and record nesting, with every reference to a common
type counted as that type's own depth — is held to the same limit as policy nesting
(``policy_max_nesting_depth``). The analysis over-approximates (a name that matches any common type's
name in any namespace counts as a reference to the deepest of them; block braces count as nesting in
the Cedar format), so it may refuse a schema Cedar would accept but never passes a deeper one. It is
iterative: a 20,000-link chain costs no Python recursion either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

import msgspec

_CEDAR_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n\r]*)
  | (?P<string>"(?:[^"\\]|\\.)*"?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_OPEN = frozenset("<{[(")
_CLOSE = frozenset(">}])")
# JSON schema type names that are not references to common types.
_BUILTIN = frozenset({"Set", "Record", "Long", "String", "Boolean", "Entity", "Extension", "EntityOrCommon"})

# A common type's references: (nesting where the reference sits, the referenced name).
Refs = list[tuple[int, str]]
_B = TypeVar("_B")  # what a scan reads: Cedar tokens, or decoded JSON


class SchemaTooDeep(ValueError):
    """The schema's types nest deeper than the limit once common types are resolved."""


def _base(name: str) -> str:
    return name.rsplit("::", 1)[-1].strip()


def resolved_depths(own: dict[str, int], refs: dict[str, Refs]) -> dict[str, int]:
    """Each common type's depth: the larger of its own nesting and, for each reference it makes,
    the nesting at that reference plus the referenced type's depth. A cycle raises ``SchemaTooDeep``
    (Cedar refuses cycles too; an infinite type has no depth)."""
    depth: dict[str, int] = {}
    for root in own:
        if root in depth:
            continue
        # Depth-first, post-order, with an explicit stack: chains may be tens of thousands long.
        stack: list[tuple[str, bool]] = [(root, False)]
        on_path: set[str] = set()
        while stack:
            name, expanded = stack.pop()
            if expanded:
                on_path.discard(name)
                best = own[name]
                for at, target in refs.get(name, ()):
                    best = max(best, at + depth.get(target, 0))
                depth[name] = best
                continue
            if name in depth:
                continue
            if name in on_path:
                raise SchemaTooDeep(f"common type {name!r} refers to itself")
            on_path.add(name)
            stack.append((name, True))
            for _at, target in refs.get(name, ()):
                if target not in depth and target in own:
                    if target in on_path:
                        raise SchemaTooDeep(f"common type {target!r} refers to itself")
                    stack.append((target, False))
    return depth


def _resolved_max(definitions: dict[str, list[_B]], scan: Callable[[_B, set[str]], tuple[int, Refs]], whole: _B) -> int:
    """The deepest point of ``whole``: its own nesting, or a reference's nesting plus the depth of the
    common type it names (each common type's depth resolved from ``definitions`` first)."""
    commons = set(definitions)
    own: dict[str, int] = {}
    refs: dict[str, Refs] = {}
    for name, bodies in definitions.items():
        for body in bodies:
            deepest, found = scan(body, commons)
            own[name] = max(own.get(name, 0), deepest)
            refs.setdefault(name, []).extend(found)
    depth = resolved_depths(own, refs)
    deepest, found = scan(whole, commons)
    return max([deepest, *(at + depth.get(target, 0) for at, target in found)])


def _cedar_scan(tokens: Iterable[tuple[str, str]], commons: set[str]) -> tuple[int, Refs]:
    """The deepest bracket nesting in ``tokens`` and the common-type references with their nesting."""
    nesting = deepest = 0
    refs: Refs = []
    for kind, text in tokens:
        if kind == "op":
            if text in _OPEN:
                nesting += 1
                deepest = max(deepest, nesting)
            elif text in _CLOSE:
                nesting = max(nesting - 1, 0)
        elif kind == "name" and _base(text) in commons:
            refs.append((nesting, _base(text)))
    return deepest, refs


def cedar_schema_depth(text: str) -> int:
    """The resolved type depth of a Cedar-format schema (an upper bound)."""
    tokens = [(m.lastgroup or "", m.group()) for m in _CEDAR_TOKEN.finditer(text)]
    tokens = [t for t in tokens if t[0] not in ("ws", "comment", "string")]
    # ``type Name = <type> ;`` defines a common type; its definition runs to the next ``;``.
    definitions: dict[str, list[list[tuple[str, str]]]] = {}
    i = 0
    while i < len(tokens) - 2:
        if tokens[i] == ("name", "type") and tokens[i + 1][0] == "name" and tokens[i + 2] == ("op", "="):
            end = i + 3
            while end < len(tokens) and tokens[end] != ("op", ";"):
                end += 1
            definitions.setdefault(_base(tokens[i + 1][1]), []).append(tokens[i + 3 : end])
            i = end
        i += 1
    return _resolved_max(definitions, _cedar_scan, tokens)


def _json_scan(root: object, commons: set[str]) -> tuple[int, Refs]:
    """The deepest ``Set``/``Record`` nesting under ``root`` and the common-type references in it."""
    deepest = 0
    refs: Refs = []
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        node, nesting = stack.pop()
        if isinstance(node, list):
            stack.extend((child, nesting) for child in node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind in ("Set", "Record"):
            nesting += 1
            deepest = max(deepest, nesting)
        elif isinstance(kind, str) and kind not in _BUILTIN and _base(kind) in commons:
            refs.append((nesting, _base(kind)))
        if kind == "EntityOrCommon" and isinstance(node.get("name"), str) and _base(node["name"]) in commons:
            refs.append((nesting, _base(node["name"])))
        stack.extend((child, nesting) for child in node.values())
    return deepest, refs


def json_schema_depth(text: str) -> int:
    """The resolved type depth of a JSON-format schema (an upper bound). Raises ``SchemaTooDeep``
    when the JSON itself nests past the decoder's limit."""
    try:
        doc = msgspec.json.decode(text)
    except RecursionError:
        raise SchemaTooDeep("the schema's JSON is nested too deeply") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        return 0  # not JSON: the schema parser refuses it with its own message
    namespaces = [ns for ns in doc.values() if isinstance(ns, dict)] if isinstance(doc, dict) else []
    definitions: dict[str, list[object]] = {}
    for ns in namespaces:
        common = ns.get("commonTypes")
        if isinstance(common, dict):
            for name, body in common.items():
                definitions.setdefault(_base(str(name)), []).append(body)
    # A common type's body is itself a type: a Set or Record at its top counts one level.
    return _resolved_max(definitions, _json_scan, namespaces)


def schema_depth(text: str, fmt: str | None) -> int:
    return json_schema_depth(text) if fmt == "json" else cedar_schema_depth(text)
