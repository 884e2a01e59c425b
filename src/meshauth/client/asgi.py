"""``meshauth.client.asgi``: guard a Starlette/FastAPI app's routes with the policy service.

For a service not behind Envoy's ext_authz (or one that wants its own checks): the same route table
(``meshauth.routes``, the format of ``MESHAUTH_ROUTES_FILE``) and the same :class:`PolicyClient`,
answering as the auth service's gate does::

    client = PolicyClient(["http://policy:8090"], store="default")
    app.add_middleware(PolicyMiddleware, client=client, routes="routes.yaml", subject=my_subject)

Who asks — one of, required (there is no default, because guessing would be unsafe):

- ``subject=``: an ``async`` function of the ASGI scope returning a :class:`Caller` (subject, extra
  context), or None when the request carries no acceptable credential (→ 401). Use it when the app
  authenticates requests itself.
- ``trust_identity_headers=True``: read the ``x-meshauth-subject``, ``x-meshauth-client-id`` and
  ``x-meshauth-scope`` headers the meshauth gate sets on allowed requests. Only safe when every request
  reaches the app through a proxy that ran the gate and **removes these headers from client requests**
  (Istio with ext_authz ``headersToUpstreamOnAllow`` overwrites them); otherwise anyone can send them.
  Absent, repeated or empty headers are a 401. Subject: ``Client::<client_id>`` when the subject is
  the client (a client-credentials token), else ``User::<subject>``; context: ``scope`` (a list) and
  ``client_id``, as the gate sends them.

Outcomes, as the gate: the route's policy allows → the app runs; a deny by the table or the policy,
or a method or URL override header (``routes.OVERRIDE_HEADERS``) → 403 with ``x-meshauth-reason``;
no decision (service down, slow past the client's deadline, breaker open) → 503
``x-meshauth-reason: policy_unavailable``. Never an allow on error. Under a root path (a ``Mount``,
``uvicorn --root-path``) the table may name the app's paths or the full ones: both are matched, and
the stricter outcome wins. WebSocket handshakes are checked
as ``GET`` and refused by closing (1008 denied, 1013 unavailable). Lifespan events pass.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

# Only the package's public names: its internals are free to change under this module.
from meshauth.client import REASON_INVALID_REQUEST, PolicyClient, Subject
from meshauth.routes import REQUEST_OVERRIDE, RouteMatch, RouteTable, is_override, load_routes, overrides_in_query

__all__ = ["Caller", "PolicyMiddleware", "caller_from_identity_headers"]

log = logging.getLogger(__name__)

REASON_HEADER = b"x-meshauth-reason"
SESSION_CLIENT_ID = "meshauth-session"  # the client id the gate gives session-based identities
_PATH_SAFE = "/!$&'()*+,;=:@~"  # kept as is when a path is re-encoded (auth.extauthz_http.target's)
_IDENTITY = (b"x-meshauth-subject", b"x-meshauth-client-id", b"x-meshauth-scope")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the policy subject, and context entries the credential adds to every check."""

    subject: Subject | Mapping[str, Any]
    context: Mapping[str, Any] = field(default_factory=dict)


def caller_from_identity_headers(scope: Scope) -> Caller | None:
    """The gate's identity headers as a :class:`Caller`; None unless each is present exactly once."""
    found: dict[bytes, list[bytes]] = {name: [] for name in _IDENTITY}
    for name, value in scope.get("headers", ()):
        if name in found:
            found[name].append(value)
    if any(len(values) != 1 for values in found.values()):
        return None
    try:
        subject, client_id, scope_text = (found[name][0].decode("ascii") for name in _IDENTITY)
    except UnicodeDecodeError:
        return None
    if not subject or not client_id:
        return None
    kind = "Client" if subject == client_id and client_id != SESSION_CLIENT_ID else "User"
    return Caller(Subject(type=kind, id=subject), {"scope": scope_text.split(), "client_id": client_id})


async def _from_headers(scope: Scope) -> Caller | None:
    return caller_from_identity_headers(scope)


class PolicyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        client: PolicyClient,
        routes: RouteTable | str | Path,
        subject: Callable[[Scope], Awaitable[Caller | None]] | None = None,
        trust_identity_headers: bool = False,
        timeout: float | None = None,
    ) -> None:
        if (subject is None) == (not trust_identity_headers):
            raise ValueError("give exactly one of subject= (a function of the scope) or trust_identity_headers=True")
        self.app = app
        self.client = client
        self.routes = routes if isinstance(routes, RouteTable) else load_routes(routes)
        self._subject = subject if subject is not None else _from_headers
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        status, reason = await self._decide(scope)
        if status == 200:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1013 if status == 503 else 1008, "reason": reason})
        else:
            await _refuse(send, status, reason)

    async def _decide(self, scope: Scope) -> tuple[int, str]:
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        raw = scope.get("raw_path")
        if raw is None:
            # ASGI makes raw_path optional (Mangum sends None). The decoded path re-encoded, as the gate
            # does (auth.extauthz_http.target): matched as is, it was decoded a second time, and
            # /documents/r%2541w (the app serves "r%41w") asked the policy about "rAw".
            raw = quote(scope["path"], safe=_PATH_SAFE).encode()
        target = raw.decode("latin-1")
        try:
            caller = await self._subject(scope)
        except Exception:  # a subject function that fails is not a credential
            log.exception("the subject function failed")
            caller = None
        if caller is None:  # authentication first, as the gate: 401 before any route is looked at
            return 401, "unauthenticated"
        if any(is_override(name) for name, _ in scope.get("headers", ())) or overrides_in_query(
            scope.get("query_string", b"").decode("latin-1")
        ):
            return 403, REQUEST_OVERRIDE  # a method or URL override the app's stack may obey (routes.py)
        route = self.routes.match(method, target)
        inner = _below_root(scope, target)
        if inner is not None:
            route = _stricter(route, self.routes.match(method, inner))
        if route.outcome == "deny":
            return 403, route.reason
        if route.outcome == "allow":
            return 200, ""
        try:
            decision = await self.client.check(
                caller.subject, route.action, route.resource or {}, dict(caller.context), timeout=self._timeout
            )
        except Exception:  # bad subject from the caller's function: no decision, fail closed
            log.exception("policy check could not be asked")
            return 503, "policy_unavailable"
        if decision.decision:
            return 200, ""
        if decision.error is None:
            return 403, "policy_denied"
        if decision.error == REASON_INVALID_REQUEST:
            return 403, "policy_invalid_request"
        return 503, "policy_unavailable"


def _below_root(scope: Scope, target: str) -> str | None:
    """``target`` without the scope's ``root_path``, as the app's router sees it (Starlette's
    ``get_route_path``), or None when the router takes nothing off.

    Under a ``Mount`` or ``uvicorn --root-path`` (which prefixes ``path`` and ``raw_path`` both), the
    app routes ``/documents/d1`` for ``/api/documents/d1``; a table may be written either way. A root
    path the target spells otherwise (``/%61pi/documents/d1`` under ``Mount("/api")``) gives "", which
    no route matches: refused."""
    root = scope.get("root_path") or ""
    path: str = scope["path"]
    if not root or not path.startswith(root) or path[len(root) : len(root) + 1] != "/":
        return None
    prefix = quote(root, safe=_PATH_SAFE)
    if target.startswith(prefix) and target[len(prefix) : len(prefix) + 1] == "/":
        return target[len(prefix) :]
    return ""


def _stricter(full: RouteMatch, inner: RouteMatch) -> RouteMatch:
    """One outcome for the two spellings of a request under a root path: a refusal by either (other
    than the default's), else the route either matched (refused if they ask different questions), else
    the default."""
    for match in (full, inner):
        if match.outcome == "deny" and match.reason != "no_route":
            return match
    if full.outcome == "authorize" and inner.outcome == "authorize":
        return full if (full.action, full.resource) == (inner.action, inner.resource) else _TWO_ROUTES
    return inner if inner.outcome == "authorize" else full


_TWO_ROUTES = RouteMatch("deny", "path_not_canonical")
_BODIES = {401: b"unauthorized\n", 403: b"forbidden\n", 503: b"unavailable\n"}


async def _refuse(send: Send, status: int, reason: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (REASON_HEADER, reason.encode("ascii"))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="meshauth"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": _BODIES[status]})
