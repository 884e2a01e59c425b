"""The hardware floor: a trivial app under the same server and interface, measured in the same run.

It answers like an allowed ext_authz check (200, three identity headers, no body), under ASGI and
under RSGI, so the difference to meshauth is meshauth's own work.
"""

from __future__ import annotations

from typing import Any

_HEADERS = (("x-meshauth-subject", "bench"), ("x-meshauth-client-id", "bench"), ("x-meshauth-scope", "read"))
_RAW = [(k.encode(), v.encode()) for k, v in _HEADERS]


class Floor:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": _RAW})
        await send({"type": "http.response.body", "body": b""})

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_empty(200, list(_HEADERS))


app = Floor()


def create_app() -> Floor:
    return app
