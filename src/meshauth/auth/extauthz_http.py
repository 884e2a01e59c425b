"""Envoy ext_authz, HTTP mode: any method on ``/ext_authz/<original path>``.

Served as raw ASGI in front of the router: this is the hot path, and it needs two headers, not a
framework. Allowed: 200 with the identity headers (list them in Istio's ``headersToUpstreamOnAllow``).
Refused: 401 with ``www-authenticate`` (also for two ``Authorization`` headers: the gate would
check one, and the upstream service might read the other); 503 when a session cannot be confirmed.
Several ``Cookie`` headers are read as one cookie string; two session cookies in it are refused like
two ``Authorization`` lines (see ``gate``).
"""

from __future__ import annotations

from typing import Any

from meshauth.auth.gate import UNREADABLE, Gate, join_cookies
from meshauth.observability.metrics import GATE_DECISIONS

PREFIX = "/ext_authz"
_Scope = dict[str, Any]

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_TEXT_STR = ("content-type", "text/plain; charset=utf-8")
_BODIES = {200: b"", 401: b"unauthorized\n", 503: b"unavailable\n"}


def _outcome(status: int) -> str:
    return "allow" if status == 200 else "error" if status >= 500 else "deny"


def is_ext_authz(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ExtAuthzHttp:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        authorizations: list[str] = []
        cookies: list[str] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorizations.append(value.decode("latin-1"))
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))
        # Warm bearer tokens are answered without awaiting anything but the response itself.
        verdict = self._gate.screen(authorizations)
        if verdict is None:
            verdict = await self._gate.check(authorizations[0] if authorizations else None, join_cookies(cookies))
        GATE_DECISIONS.add("http", verdict.credential, _outcome(verdict.status))
        await self._respond(send, verdict.status, verdict.encoded())

    @staticmethod
    async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        body = _BODIES.get(status, b"")
        # An allow carries no body, so no content-type: Envoy reads only the status and headers.
        await send({"type": "http.response.start", "status": status, "headers": headers + _TEXT if body else headers})
        await send({"type": "http.response.body", "body": body})

    async def rsgi(self, scope: Any, protocol: Any) -> None:
        """The same check under granian's RSGI interface: headers read lazily, one response call."""
        headers = scope.headers
        # Every line, not just the first — but granian leaves out values that are not visible ASCII
        # (see cli/serve.py: why the auth service defaults to ASGI).
        authorizations: list[str] = headers.get_all("authorization")
        unreadable = not authorizations and "authorization" in headers
        verdict = UNREADABLE if unreadable else self._gate.screen(authorizations)
        if verdict is None:
            cookie = join_cookies(headers.get_all("cookie"))
            verdict = await self._gate.check(authorizations[0] if authorizations else None, cookie)
        status = verdict.status
        GATE_DECISIONS.add(
            "http", verdict.credential, "allow" if status == 200 else "error" if status >= 500 else "deny"
        )
        body = _BODIES.get(status, b"")
        if body:
            protocol.response_bytes(status, [*verdict.headers, _TEXT_STR], body)
        else:
            protocol.response_empty(status, list(verdict.headers))
