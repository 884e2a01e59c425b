"""The auth service's metrics. Labels are small closed sets; never a user or token value.

Counters are plain ints (``observability.metrics.IntCounters``); call sites change them through the
functions and methods here, never through their internals. Counts other objects keep (the JWT
cache's) are published into metrics by ``AuthApp._publish_metrics``.
"""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

from meshauth.observability.metrics import IntCounters, IntHistogram

GATE_DECISIONS = IntCounters(
    "meshauth_gate_decisions",
    "ext_authz checks answered, by transport, credential kind and outcome.",
    ["transport", "credential", "outcome"],
)
# The gRPC port's twin of ``meshauth_http_request_duration_seconds`` (observability.requests).
GRPC_REQUEST_SECONDS = IntHistogram(
    "meshauth_grpc_request_duration_seconds",
    "gRPC calls answered (ext_authz Check), by method and the checked request's status class, in seconds.",
    ["method", "status"],
)
TOKENS_ISSUED = IntCounters("meshauth_tokens_issued", "Access tokens issued, by grant.", ["grant"])
JWT_CACHE = IntCounters("meshauth_jwt_cache", "JWT validation cache lookups.", ["result"])
# Several workers: every worker mirrors the same denylist (the largest is shown), and the stream
# reads 1 only while every live worker follows it.
REVOKED_TOKENS = Gauge("meshauth_denylist_size", "Revoked jtis mirrored in this process.", multiprocess_mode="livemax")
# Labelled so that only the auth service exports it: every process that imports this module (the
# policy service does, through the command line) would otherwise export an unlabelled 0, and a
# dashboard's min() over all targets would read "disconnected" for ever.
INVALIDATION_CONNECTED = Gauge(
    "meshauth_invalidation_stream_connected",
    "1 while this process (every worker) follows the invalidation stream.",
    ["stream"],
    multiprocess_mode="livemin",
)

# Server-side batching (issue 11): token-endpoint account and client lookups per SQL query.
LOOKUP_BATCH_SIZE = Histogram(
    "meshauth_auth_lookup_batch_size",
    "Account (user or client) lookups answered by one SQL query, by kind.",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def gate_outcome(status: int) -> str:
    """An ext_authz answer as a metric outcome: 200 allows, 5xx is an error (fail closed), else a deny."""
    if status == 200:
        return "allow"
    return "error" if status >= 500 else "deny"


def count_gate_decision(transport: str, credential: str, status: int) -> None:
    GATE_DECISIONS.add(transport, credential, gate_outcome(status))
