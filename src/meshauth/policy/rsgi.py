"""The policy app under granian's RSGI interface (``Interfaces.RSGI``).

Decision requests are read and answered natively (``await protocol()``, ``response_bytes``); every
other request goes to the Starlette app through ``meshauth.rsgi_bridge.forward``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshauth.http import ApiError
from meshauth.policy.fast import JSON, route
from meshauth.rsgi_bridge import ERROR_HEADERS, forward, read_body, respond_error

if TYPE_CHECKING:
    from meshauth.policy.fast import DecisionFront

_JSON_HEADERS = [("content-type", JSON)]


async def handle(front: DecisionFront, scope: Any, protocol: Any) -> None:
    if scope.proto != "http":
        return  # no websockets here
    matched = route(scope.path) if scope.method == "POST" else None
    if matched is None:
        limit = front.body_limit(scope.path, scope.headers.get("authorization"))
        await forward(front.app, scope, protocol, max_body=limit)
        return
    if front.guard is not None:
        refused = front.guard.check_rsgi(scope.headers)
        if refused is not None:
            respond_error(protocol, refused)
            return
    try:
        body = await read_body(scope, protocol, front.max_body)
    except ApiError as exc:
        respond_error(protocol, exc)
        return
    status, is_error, payload = await front.answer(*matched, body)
    protocol.response_bytes(status, ERROR_HEADERS if is_error else _JSON_HEADERS, payload)
