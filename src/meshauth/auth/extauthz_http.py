"""Envoy ext_authz, HTTP mode: any method on ``/ext_authz/<original path>``.

Served as raw ASGI in front of the router: this is the hot path, and it needs two headers, not a
framework. Allowed: 200 with the identity headers (list them in Istio's ``headersToUpstreamOnAllow``).
Refused: 401 with ``www-authenticate``; 503 when a session cannot be confirmed.
"""

from __future__ import annotations

from typing import Any

from meshauth.auth.gate import Gate
from meshauth.observability.metrics import GATE_DECISIONS

PREFIX = "/ext_authz"
_Scope = dict[str, Any]

_COUNTERS = {
    (credential, outcome): GATE_DECISIONS.labels("http", credential, outcome)
    for credential in ("bearer", "session", "none")
    for outcome in ("allow", "deny", "error")
}
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BODIES = {200: b"", 401: b"unauthorized\n", 503: b"unavailable\n"}


def is_ext_authz(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ExtAuthzHttp:
    def __init__(self, gate: Gate, max_authorization_bytes: int) -> None:
        self._gate = gate
        self._max = max_authorization_bytes

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        authorization: str | None = None
        cookie: str | None = None
        oversized = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                if len(value) > self._max:
                    oversized = True
                authorization = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        if oversized:
            # Refused before any parsing: an oversized credential is never a valid one.
            await self._respond(send, 401, [(b"www-authenticate", b'Bearer realm="meshauth", error="invalid_token"')])
            _COUNTERS["bearer", "deny"].inc()
            return
        verdict = await self._gate.check(authorization, cookie)
        outcome = "allow" if verdict.allowed else ("error" if verdict.status >= 500 else "deny")
        _COUNTERS[verdict.credential, outcome].inc()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in verdict.headers]
        await self._respond(send, verdict.status, headers)

    @staticmethod
    async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        body = _BODIES.get(status, b"")
        # An allow carries no body, so no content-type: Envoy reads only the status and headers.
        await send({"type": "http.response.start", "status": status, "headers": headers + _TEXT if body else headers})
        await send({"type": "http.response.body", "body": body})
