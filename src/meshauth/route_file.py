"""Reading a route file (the format and matching: ``meshauth.routes``).

PyYAML's safe parser, checked event by event *before* any object is built: anchors and aliases
(billion laughs), explicit tags, more than one document, nesting deeper than :data:`MAX_DEPTH` and
more than :data:`MAX_NODES` nodes are refused, as is a file over :data:`MAX_FILE_BYTES`. Objects are
then built from the composed nodes (never by PyYAML's constructors), so every field is checked where
it is written and every error names its file and line: :class:`RouteTableError`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_METHOD_CHARS",
    "Default",
    "Route",
    "RouteTableError",
    "read_route_file",
    "read_routes",
]

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 8  # the format needs 4: document → routes → route → resource
MAX_NODES = 200_000
MAX_ROUTES = 10_000
MAX_NAME_CHARS = 256

Default = Literal["deny", "authenticated"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_METHOD_CHARS = 32
_METHOD = re.compile(rf"[A-Z][A-Z0-9_-]{{0,{MAX_METHOD_CHARS - 1}}}\Z")
_LITERAL_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+\Z")  # RFC 3986 pchar, no escapes
_STR = "tag:yaml.org,2002:str"


class RouteTableError(ValueError):
    """The route file is invalid; the message is ``<file>:<line>: <problem>``."""


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    methods: frozenset[str] | None  # None: any method
    segments: tuple[str | None, ...]  # a literal, or None where a placeholder stands
    names: tuple[str, ...]  # placeholder names, in path order
    action: str
    resource_type: str
    resource_id: tuple[tuple[str, str | None], ...]  # (literal text, placeholder name or None)
    line: int


def read_route_file(path: str | Path) -> tuple[tuple[Route, ...], Default]:
    """Read and check a route file: its routes and default; :class:`RouteTableError` names the line."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RouteTableError(f"{source}: cannot read the route file ({exc.strerror or exc})") from None
    return read_routes(data, source=source)


def read_routes(data: bytes | str, *, source: str = "<routes>") -> tuple[tuple[Route, ...], Default]:
    if len(data) > MAX_FILE_BYTES:
        raise RouteTableError(f"{source}:1: the route file is over {MAX_FILE_BYTES} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise RouteTableError(f"{source}:{line}: not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    try:
        _screen(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RouteTableError(f"{source}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, controls)
        line = text.count("\n", 0, exc.position) + 1
        raise RouteTableError(f"{source}:{line}: not valid YAML: character {exc.character!r} is not allowed") from None
    except yaml.YAMLError as exc:
        raise RouteTableError(f"{source}:1: not valid YAML: {str(exc).splitlines()[0]}") from None
    if node is None:
        raise RouteTableError(f"{source}:1: the route file is empty; it needs a `routes:` list")
    return _Reader(source).table(node)


def _screen(text: str, source: str) -> None:
    """Refuse what must never reach the composer: aliases, anchors, tags, depth, size, documents."""
    depth = nodes = documents = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise RouteTableError(f"{source}:{line}: aliases (*{event.anchor}) are not allowed in a route file")
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise RouteTableError(f"{source}:{line}: one YAML document only")
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if event.anchor is not None:
                raise RouteTableError(f"{source}:{line}: anchors (&{event.anchor}) are not allowed in a route file")
            tag = getattr(event, "tag", None)
            if tag not in (None, "!"):
                raise RouteTableError(f"{source}:{line}: tags ({tag}) are not allowed in a route file")
            if nodes > MAX_NODES:
                raise RouteTableError(f"{source}:{line}: more than {MAX_NODES} YAML nodes")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise RouteTableError(f"{source}:{line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, problem: str) -> RouteTableError:
        return RouteTableError(f"{self.source}:{node.start_mark.line + 1}: {problem}")

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) and key.tag == _STR else None
            if name not in allowed:
                raise self.fail(key, f"{what}: unknown key {str(name)[:64]!r} (allowed: {', '.join(allowed)})")
            if name in out:
                raise self.fail(key, f"{what}: {name!r} given twice")
            out[name] = value
        return out

    def text(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            raise self.fail(node, f"{what} must be a string")
        value: str = node.value
        if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
            raise self.fail(node, f"{what} must be 1-{MAX_NAME_CHARS} printable characters")
        return value

    def table(self, node: yaml.Node) -> tuple[tuple[Route, ...], Default]:
        top = self.mapping(node, "the route file", ("routes", "default"))
        default: Default = "deny"
        if "default" in top:
            value = self.text(top["default"], "default")
            if value not in ("deny", "authenticated"):
                raise self.fail(top["default"], f"default must be deny or authenticated, not {value[:64]!r}")
            default = "authenticated" if value == "authenticated" else "deny"
        if "routes" not in top:
            raise self.fail(node, "the route file needs a `routes:` list")
        items = top["routes"]
        if not isinstance(items, yaml.SequenceNode):
            raise self.fail(items, "routes must be a list")
        if len(items.value) > MAX_ROUTES:
            raise self.fail(items, f"more than {MAX_ROUTES} routes")
        return tuple(self.route(item) for item in items.value), default

    def route(self, node: yaml.Node) -> Route:
        fields = self.mapping(node, "a route", ("method", "path", "action", "resource"))
        for name in ("method", "path", "action", "resource"):
            if name not in fields:
                raise self.fail(node, f"a route needs {name!r}")
        methods = self.methods(fields["method"])
        path, segments, names = self.path(fields["path"])
        action = self.text(fields["action"], "action")
        resource = self.mapping(fields["resource"], "resource", ("type", "id"))
        for name in ("type", "id"):
            if name not in resource:
                raise self.fail(fields["resource"], f"resource needs {name!r}")
        rtype = self.text(resource["type"], "resource type")
        if "{" in rtype or "}" in rtype:
            raise self.fail(resource["type"], "resource type is a constant (placeholders go in id)")
        rid = self.template(resource["id"], set(names))
        return Route(path, methods, segments, names, action, rtype, rid, node.start_mark.line + 1)

    def methods(self, node: yaml.Node) -> frozenset[str] | None:
        values = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not values:
            raise self.fail(node, 'method: give at least one method, or "*"')
        out: set[str] = set()
        for item in values:
            method = self.text(item, "method")
            if method == "*":
                if len(values) != 1:
                    raise self.fail(item, 'method: "*" stands alone')
                return None
            if not _METHOD.match(method):
                raise self.fail(item, f"method {method[:64]!r} is not an upper-case HTTP method such as GET")
            out.add(method)
        return frozenset(out)

    def path(self, node: yaml.Node) -> tuple[str, tuple[str | None, ...], tuple[str, ...]]:
        path = self.text(node, "path")
        if not path.startswith("/"):
            raise self.fail(node, f"path {path[:64]!r} must start with /")
        parts = [] if path == "/" else path[1:].split("/")
        segments: list[str | None] = []
        names: list[str] = []
        for i, part in enumerate(parts):
            placeholder = _PLACEHOLDER.fullmatch(part)
            if placeholder:
                if placeholder.group(1) in names:
                    raise self.fail(node, f"path: {{{placeholder.group(1)}}} appears twice")
                names.append(placeholder.group(1))
                segments.append(None)
            elif part == "" and i == len(parts) - 1:
                segments.append("")  # a trailing slash
            elif part in (".", "..") or not _LITERAL_SEGMENT.match(part):
                raise self.fail(
                    node,
                    f"path segment {part[:64]!r}: a {{name}} placeholder (the whole segment) or a literal of"
                    " unreserved characters (no %, braces, empty or dot segments)",
                )
            else:
                segments.append(part)
        return path, tuple(segments), tuple(names)

    def template(self, node: yaml.Node, names: set[str]) -> tuple[tuple[str, str | None], ...]:
        text = self.text(node, "resource id")
        parts: list[tuple[str, str | None]] = []
        at = 0
        for m in _PLACEHOLDER.finditer(text):
            if m.group(1) not in names:
                raise self.fail(node, f"resource id: {{{m.group(1)}}} is not a placeholder of the path")
            parts.append((text[at : m.start()], None))
            parts.append(("", m.group(1)))
            at = m.end()
        parts.append((text[at:], None))
        if any("{" in t or "}" in t for t, name in parts if name is None):
            raise self.fail(node, "resource id: braces only as {name} placeholders of the path")
        # A decoded segment holds any character but "/" (route_paths refuses %2F): with anything else
        # between two placeholders, two paths give one id ({a}-{b}: a-b-c for /a-b/c and /a/b-c), and
        # the policy would decide for one resource what the upstream serves as another.
        names_seen = [(i, name) for i, (_, name) in enumerate(parts) if name is not None]
        for (i, first), (j, second) in itertools.pairwise(names_seen):
            if not any("/" in text for text, _ in parts[i + 1 : j]):
                raise self.fail(
                    node, f"resource id: {{{first}}} and {{{second}}} must be parted by a / (no path segment holds one)"
                )
        return tuple(p for p in parts if p[1] is not None or p[0])
