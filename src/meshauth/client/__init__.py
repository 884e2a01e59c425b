"""``meshauth.client``: ask the meshauth policy service for decisions, fast and safely.

Layout: ``_client.py`` holds :class:`PolicyClient` (the check path: L1 → single-flight → L2 →
batcher → call); beside it one private module per mechanism — ``_call.py`` (one call: breaker,
endpoint, transport, retries), ``_endpoints.py`` (power of two choices, ejection), ``_answers.py``
(responses → decisions), ``_transport.py`` (the transport interface and the aiohttp pool),
``_transport_h1.py`` and ``_h1_conn.py`` (the own HTTP/1.1 pool, the default for http:// URLs),
``_breaker.py``, ``_retry.py`` (retry budget), ``_request.py`` (a check's arguments), ``_keys.py``
(canonical cache keys), ``_cache.py`` (L1, L2), ``_stored.py`` (both levels and the fallback),
``_tracking.py`` (the state answered at), ``_hot.py`` and ``_warming.py`` (hotness, warming),
``_announcements.py`` and ``_invalidation.py`` (state announcements across processes),
``_metrics.py``, ``_config.py`` (keyword-only, frozen configuration), ``_models.py`` (Decision,
State, Consistency), ``_flight.py`` (single-flight without a task per miss), ``_resp.py`` (L2's own
connection for its two hot commands). No private module imports this package's ``__init__`` (no
import cycle). The batcher is shared with other components (``meshauth.batching``). This package
imports no service code: only the wire types and shared layers (``meshauth.cache``,
``meshauth.bus``, ``meshauth.redis_client``, ``meshauth.observability``).

Quick use::

    async with PolicyClient(["http://127.0.0.1:8090"], store="default") as client:
        d = await client.check({"type": "User", "id": "alice"}, "view", {"type": "Doc", "id": "d1"})
        if d.decision: ...
"""

from meshauth.client._breaker import CircuitBreaker
from meshauth.client._client import PolicyClient
from meshauth.client._config import (
    DEFAULT_TIMEOUT,
    BalanceConfig,
    BatchConfig,
    BreakerConfig,
    CacheConfig,
    EjectionConfig,
    PoolConfig,
    RetryConfig,
    WarmConfig,
)
from meshauth.client._invalidation import StateFollower, announce
from meshauth.client._models import (
    FULLY_CONSISTENT,
    MINIMIZE_LATENCY,
    REASON_INVALID_REQUEST,
    REASON_UNAVAILABLE,
    Check,
    Consistency,
    Decision,
    State,
    at_least,
)
from meshauth.client._request import Question
from meshauth.client._retry import RetryBudget
from meshauth.client._transport import AiohttpTransport, Response, Transport, TransportError
from meshauth.client._transport_h1 import H1Transport
from meshauth.wire import Resource, Subject

__all__ = [
    "DEFAULT_TIMEOUT",
    "FULLY_CONSISTENT",
    "MINIMIZE_LATENCY",
    "REASON_INVALID_REQUEST",
    "REASON_UNAVAILABLE",
    "AiohttpTransport",
    "BalanceConfig",
    "BatchConfig",
    "BreakerConfig",
    "CacheConfig",
    "Check",
    "CircuitBreaker",
    "Consistency",
    "Decision",
    "EjectionConfig",
    "H1Transport",
    "PolicyClient",
    "PoolConfig",
    "Question",
    "Resource",
    "Response",
    "RetryBudget",
    "RetryConfig",
    "State",
    "StateFollower",
    "Subject",
    "Transport",
    "TransportError",
    "WarmConfig",
    "announce",
    "at_least",
]
