"""Envoy ext_authz, HTTP mode: any method on ``/ext_authz/<original path>``.

Served as raw ASGI in front of the router: this is the hot path, and it needs two headers, not a
framework. Allowed: 200 with the identity headers (list them in Istio's ``headersToUpstreamOnAllow``).
Refused: 401 with ``www-authenticate`` (also for two ``Authorization`` headers: the gate would
check one, and the upstream service might read the other); 503 when a session cannot be confirmed.
Several ``Cookie`` headers are read as one cookie string; two session cookies in it are refused like
two ``Authorization`` lines (see ``gate``).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from meshauth.auth.gate import Gate, join_cookies
from meshauth.auth.metrics import count_gate_decision

PREFIX = "/ext_authz"

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BODIES = {200: b"", 401: b"unauthorized\n", 503: b"unavailable\n"}


def is_ext_authz(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ExtAuthzHttp:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        count_gate_decision("http", verdict.credential, verdict.status)
        self._gate.audit.gate(verdict.status, verdict.headers, verdict.reason, "http", scope["path"])
        await self._respond(send, verdict.status, verdict.encoded())

    @staticmethod
    async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        body = _BODIES.get(status, b"")
        # An allow carries no body, so no content-type: Envoy reads only the status and headers.
        await send({"type": "http.response.start", "status": status, "headers": headers + _TEXT if body else headers})
        await send({"type": "http.response.body", "body": body})
