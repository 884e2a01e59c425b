"""The client's Prometheus metrics, defined once per process (``_seconds``/``_total`` conventions).

Hot-path counters and histograms are plain numbers read at scrape time (``IntCounters``,
``IntHistogram``: an L1 hit must stay cheap, and a cold gate makes a call per ~3-4 checks — the two
prometheus_client histograms observed per call, with their multiprocess value files, showed in its
profile). Labels are closed sets; the store name is chosen by the operator.
"""

from __future__ import annotations

from prometheus_client import Gauge

from meshauth.observability.metrics import IntCounters, IntHistogram

__all__ = [
    "BATCH_SIZE",
    "BREAKER_STATE",
    "BREAKER_TRANSITIONS",
    "CACHE",
    "CALL_SECONDS",
    "CHECKS",
    "EJECTIONS",
    "FALLBACKS",
    "RETRIES",
    "SINGLEFLIGHT_JOINS",
    "STATE_CODE",
    "WARMED",
]

CALL_SECONDS = IntHistogram(
    "meshauth_client_call_seconds",
    "Calls to the policy service (one per batch), by endpoint and outcome.",
    ["endpoint", "outcome"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
BATCH_SIZE = IntHistogram(
    "meshauth_client_batch_size",
    "Checks carried per call to the policy service.",
    [],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
CHECKS = IntCounters("meshauth_client_checks", "Checks answered, by outcome and source.", ["outcome", "source"])
CACHE = IntCounters("meshauth_client_cache", "Decision cache lookups, by level and result.", ["level", "result"])
SINGLEFLIGHT_JOINS = IntCounters(
    "meshauth_client_singleflight_joins", "Checks that joined an identical check already in flight.", []
)
BREAKER_TRANSITIONS = IntCounters(
    "meshauth_client_breaker_transitions", "Circuit breaker state changes, by store and new state.", ["store", "to"]
)
# livemax: with several worker processes (each with its own breaker), a scrape shows the worst state.
BREAKER_STATE = Gauge(
    "meshauth_client_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ["store"],
    multiprocess_mode="livemax",
)
STATE_CODE = {"closed": 0, "half_open": 1, "open": 2}
RETRIES = IntCounters(
    "meshauth_client_retries", "Retries to the policy service, by result (sent, or refused by the budget).", ["result"]
)
FALLBACKS = IntCounters(
    "meshauth_client_fallbacks", "Checks answered without the service: stale cache entry or deny.", ["kind"]
)
EJECTIONS = IntCounters(
    "meshauth_client_endpoint_ejections", "Policy service URLs ejected after consecutive failures.", ["url"]
)
WARMED = IntCounters(
    "meshauth_client_warmed", "Decisions put into L1 by warming, by source (l2, or service).", ["source"]
)
