"""Metric objects, defined once per process. Labels are small closed sets; never a user or token value."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import Response

GATE_DECISIONS = Counter(
    "meshauth_gate_decisions_total",
    "ext_authz checks answered, by transport, credential kind and outcome.",
    ["transport", "credential", "outcome"],
)
TOKENS_ISSUED = Counter("meshauth_tokens_issued_total", "Access tokens issued, by grant.", ["grant"])
JWT_CACHE = Counter("meshauth_jwt_cache_total", "JWT validation cache lookups.", ["result"])
REVOKED_TOKENS = Gauge("meshauth_denylist_size", "Revoked jtis mirrored in this process.")
INVALIDATION_CONNECTED = Gauge(
    "meshauth_invalidation_stream_connected", "1 while this process follows the invalidation stream."
)


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
