"""Route tables: which policy question a request's method and path ask (authz mode).

Shared by the auth service's gate (ext_authz, ``MESHAUTH_ROUTES_FILE``) and ``meshauth.client.asgi``;
imports neither. A file::

    default: deny            # or: authenticated — what an unmatched path gets (default: deny)
    routes:
      - method: GET          # a method, a list of methods, or "*"
        path: /documents/{id}
        action: read
        resource: {type: Document, id: "{id}"}

Matching (``RouteTable.match``): the path is split and decoded as ``route_paths`` says (the query
string takes no part; spellings on which upstreams differ are refused, fail closed). Routes are tried
in order; ``{name}`` matches exactly one non-empty segment, anything else matches that segment
literally (case-sensitive); the first route matching both the path and the method wins. Then:

- a path some route matches, but no route with this method: **deny** (``method_not_routed``) —
  ``default`` is for paths the table does not know, not for methods it forgot;
- a path no route matches but that would match one ignoring case, Unicode compatibility forms (NFKC:
  ``/ｄocuments``) and one trailing slash (an upstream may serve ``/Documents/d1/`` as
  ``/documents/d1``): **deny** (``path_not_canonical``), whatever the
  default, so ``default: authenticated`` cannot be reached by respelling a routed path; likewise a
  path a route matches but that, so respelled, would match a route listed *before* it and not
  matching it as spelled (``/documents/ADMIN``: ``/documents/admin`` to such an upstream, not the
  ``/documents/{id}`` after it);
- otherwise unmatched: ``default`` (``deny`` → ``no_route``).

Reading the file (``route_file``) refuses anchors and aliases (billion laughs), tags, deep nesting
and huge files before any object is built; every error names the file and line
(:class:`RouteTableError`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import unquote_plus

from meshauth.admission import SecondSight
from meshauth.route_file import (
    MAX_FILE_BYTES,
    MAX_METHOD_CHARS,
    Default,
    Route,
    RouteTableError,
    read_route_file,
    read_routes,
)
from meshauth.route_paths import NOT_CANONICAL, PathRefused, split_path

__all__ = [
    "MAX_FILE_BYTES",
    "OVERRIDE_HEADERS",
    "OVERRIDE_PARAMETER",
    "REQUEST_OVERRIDE",
    "Route",
    "RouteMatch",
    "RouteTable",
    "RouteTableError",
    "is_override",
    "load_routes",
    "overrides_in_query",
    "parse_routes",
]

_MEMO_SIZE = 8192
# Only targets this short are remembered: the memo is bounded by count, and at 8,192 entries of the
# longest paths a request head may carry (~8 KiB each, plus the resource ids cut from them) it held
# ~66 MiB per worker. Real routes are far shorter; longer targets are matched each time.
_MEMO_TARGET_MAX = 512
# Nor methods longer than a route file may name (``route_file``: 32 characters): such a method matches
# only a ``*`` route, and granian (Envoy over HTTP/2 too) passes 50 KB methods — 8,192 of them would hold
# ~400 MiB per worker, the target bound notwithstanding.
_MEMO_METHOD_MAX = MAX_METHOD_CHARS

# Headers by which common upstream frameworks serve another method or path than the request line's:
# Rack/Rails and Express ``method-override`` (X-HTTP-Method-Override), ASP.NET/OData (X-HTTP-Method),
# X-Method-Override, Symfony and IIS URL rewriting (X-Original-URL, X-Rewrite-URL). The gate would
# authorize ``GET /documents/d1`` (read) and such an upstream serve a DELETE, or another path. Like
# the path spellings on which upstreams differ (``route_paths``), refused by the gate and by
# ``meshauth.client.asgi`` (403 ``request_override``), whatever the route: one legitimate use (PATCH
# tunnelled through POST) costs the caller a clear refusal, an ignored one an authorization bypass.
OVERRIDE_HEADERS = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url"}
)
REQUEST_OVERRIDE = "request_override"
# The same names with ``_`` for ``-``: CGI-style servers (Rack on Puma before 6.4.3, PHP, WSGI's environ)
# read ``X_HTTP_METHOD_OVERRIDE`` as ``HTTP_X_HTTP_METHOD_OVERRIDE``, exactly as ``X-HTTP-Method-Override``,
# and Envoy passes names with underscores by default. Compare ``name.replace("_", "-")`` (lower-cased).

_RAW_OVERRIDES = frozenset(name.encode() for name in OVERRIDE_HEADERS)
# The query parameter by which Express ``methodOverride('_method')`` and Symfony (``_method``, with
# http_method_override) serve a POST as another method: refused as the headers are. The same parameter
# in a form *body* (Rails, Laravel) never reaches ext_authz: docs/security.md says to turn it off.
OVERRIDE_PARAMETER = "_method"
_PAIRS = re.compile("[&;]")

Outcome = Literal["authorize", "allow", "deny"]


def _query_override(target: str) -> bool:
    q = target.find("?")
    return q != -1 and overrides_in_query(target[q + 1 :])


def overrides_in_query(query: str) -> bool:
    """Whether a query string names :data:`OVERRIDE_PARAMETER` (any case, percent-encoded or not). The
    route table checks targets that carry their query (gRPC's path); ASGI servers hand the query apart
    (``query_string``), so the HTTP gate and ``meshauth.client.asgi`` ask this themselves."""
    lowered = query.lower()
    if "method" not in lowered and "%" not in query:
        return False  # the common query, decided without splitting it
    for pair in _PAIRS.split(query):  # ``;`` too: some query parsers (older Python, Tomcat) split on it
        key = pair.split("=", 1)[0]
        if unquote_plus(key, errors="replace").lower() == OVERRIDE_PARAMETER:
            return True
    return False


def is_override(name: bytes) -> bool:
    """Whether a lower-cased header name is one of :data:`OVERRIDE_HEADERS`, ``_`` read as ``-``."""
    return name in _RAW_OVERRIDES or (b"_" in name and name.replace(b"_", b"-") in _RAW_OVERRIDES)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """``authorize``: ask the policy ``action`` on ``resource``; ``allow``: ``default: authenticated``;
    ``deny``: refuse with ``reason``."""

    outcome: Outcome
    reason: str = ""
    action: str = ""
    resource: Mapping[str, str] | None = None
    route: str = ""
    # Remembered by its table (its path's second sighting on): a memo keyed by this object's identity
    # (``auth.authz_questions``) keeps entries only for kept matches, which alone are seen again.
    kept: bool = field(default=False, compare=False)


_NO_ROUTE: Final = RouteMatch("deny", "no_route")
_OVERRIDDEN: Final = RouteMatch("deny", REQUEST_OVERRIDE)
_AUTHENTICATED: Final = RouteMatch("allow", "no_route")
_WRONG_METHOD: Final = RouteMatch("deny", "method_not_routed")


class RouteTable:
    def __init__(self, routes: tuple[Route, ...], default: Default = "deny") -> None:
        self.routes = routes
        self.default: Default = default
        self._memo: dict[tuple[str, str], RouteMatch] = {}
        self._admission = SecondSight(_MEMO_SIZE)
        # Each route's segments as ``_near_miss`` compares them (a placeholder: None).
        self._folded = tuple(tuple(None if s is None else _fold(s) for s in route.segments) for route in routes)

    def match(self, method: str, target: str) -> RouteMatch:
        """The outcome for a request (``target``: the path as sent, query string allowed). Remembered
        from a target's second sighting (``meshauth.admission``: a target seen once leaves only its
        hash), so traffic that never repeats a path leaves nothing for the collector to walk."""
        if len(target) > _MEMO_TARGET_MAX or len(method) > _MEMO_METHOD_MAX:
            return self._match(method.upper(), target)
        key = (method, target)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._match(method.upper(), target)
            if self._admission.admit(key):  # kept from its second sighting (``meshauth.admission``)
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()  # bounded: hostile paths cannot grow it
                hit = self._memo[key] = RouteMatch(hit.outcome, hit.reason, hit.action, hit.resource, hit.route, True)
        return hit

    def _match(self, method: str, target: str) -> RouteMatch:
        if _query_override(target):
            return _OVERRIDDEN
        try:
            segments = split_path(target)
        except PathRefused as exc:
            return RouteMatch("deny", exc.reason)
        path_known = False
        for i, route in enumerate(self.routes):
            values = _bind(route, segments)
            if values is None:
                continue
            path_known = True
            if route.methods is None or method in route.methods:
                if i and self._near_miss(segments, before=i, method=method):
                    # A respelling of a route listed before this one (``/documents/ADMIN`` before
                    # ``/documents/{id}``): a case-insensitive upstream serves that route, not this.
                    return RouteMatch("deny", NOT_CANONICAL)
                rid = "".join(text if name is None else values[name] for text, name in route.resource_id)
                return RouteMatch(
                    "authorize",
                    action=route.action,
                    resource={"type": route.resource_type, "id": rid},
                    route=route.path,
                )
        if path_known:
            return _WRONG_METHOD
        if self._near_miss(segments):
            return RouteMatch("deny", NOT_CANONICAL)
        return _AUTHENTICATED if self.default == "authenticated" else _NO_ROUTE

    def _near_miss(self, segments: tuple[str, ...], before: int | None = None, method: str = "") -> bool:
        """Whether the path, respelled, matches a route (of the first ``before`` routes, then only those
        that do not match it as spelled, that take ``method``, and that would ask another question than
        route ``before``: ``/x/{id}/`` listed before ``/x/{id}`` with the same action and resource is no
        other route to an upstream that ignores the slash)."""
        folded = tuple(_fold(s) for s in segments)
        if folded and folded[-1] == "":
            folded = folded[:-1]
        for j, literal in enumerate(self._folded[:before]):
            if before is not None:
                earlier = self.routes[j]
                if (
                    (earlier.methods is not None and method not in earlier.methods)
                    or _same_question(earlier, self.routes[before])
                    or _bind(earlier, segments) is not None
                ):
                    continue
            for candidate in (folded, (*folded, "")):
                if len(literal) == len(candidate) and all(
                    (lit is None and seg != "") or lit == seg for lit, seg in zip(literal, candidate, strict=True)
                ):
                    return True
        return False


def _same_question(a: Route, b: Route) -> bool:
    return (a.action, a.resource_type, a.resource_id) == (b.action, b.resource_type, b.resource_id)


def _fold(segment: str) -> str:
    """What case-insensitive or NFKC-normalising upstreams may take a segment for."""
    return segment.casefold() if segment.isascii() else unicodedata.normalize("NFKC", segment).casefold()


def _bind(route: Route, segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(route.segments) != len(segments):
        return None
    values: dict[str, str] = {}
    names = iter(route.names)
    for literal, segment in zip(route.segments, segments, strict=True):
        if literal is None:
            if not segment:
                return None
            values[next(names)] = segment
        elif literal != segment:
            return None
    return values


def load_routes(path: str | Path) -> RouteTable:
    """Read and check a route file; :class:`RouteTableError` (``<file>:<line>: <problem>``) if invalid."""
    routes, default = read_route_file(path)
    return RouteTable(routes, default)


def parse_routes(data: bytes | str, *, source: str = "<routes>") -> RouteTable:
    """:func:`load_routes` for a file's contents."""
    routes, default = read_routes(data, source=source)
    return RouteTable(routes, default)
