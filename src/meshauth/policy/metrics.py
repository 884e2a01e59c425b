"""The policy service's Prometheus metrics (served at ``GET /metrics``).

Counters are plain ints read at scrape time (``observability.metrics.IntCounters``: no lock on the
hot path), changed only through ``add`` or :func:`add_many`. Per-store gauges: ``store_gauges``.
Labels are closed sets: endpoint, outcome, and store names (which only the admin creates).
"""

from __future__ import annotations

from prometheus_client import Histogram

from meshauth.observability.metrics import IntCounters, IntHistogram

DECISION_SECONDS = IntHistogram(
    "meshauth_policy_decision_duration_seconds",
    "Decision requests, from body read to answer (parse, decide, encode), by endpoint, in seconds.",
    ["endpoint"],
)
DECISIONS = IntCounters(
    "meshauth_policy_decisions", "Decisions answered, by endpoint and outcome.", ["endpoint", "outcome"]
)
ENGINE_CALLS = IntCounters("meshauth_policy_engine_calls", "Cedar is_authorized_batch calls.", ["path"])
TABLE_DECISIONS = IntCounters(
    "meshauth_policy_table_decisions", "Decisions answered from a scope-only policy set's table, without Cedar.", []
)
INDEX_CACHE = IntCounters(
    "meshauth_policy_index_cache",
    "Scope-index lookups of a compiled policy subset, by outcome (hit rate: hit / (hit + miss)).",
    ["outcome"],
)
ENTITY_CACHE = IntCounters(
    "meshauth_policy_entity_cache",
    "Entity cache lookups of stored entities (one per uid), by outcome (hit rate: hit / (hit + miss)).",
    ["outcome"],
)
ENTITY_QUERIES = IntCounters("meshauth_policy_entity_queries", "SQL round trips made by the entity loader.", [])
DECISION_API_REFUSED = IntCounters(
    "meshauth_policy_decision_api_refused",
    "Decision requests refused by the decision API's protection (401), by error.",
    ["error"],
)

# Server-side batching (issue 11): observed once per coalesced batch, not per decision.
COALESCED_BATCH_SIZE = Histogram(
    "meshauth_policy_coalesced_batch_size",
    "Single evaluation requests answered together by one coalesced batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
# Counted, not a histogram observation: this is the low-load path, kept as cheap as coalescing off.
COALESCED_INLINE = IntCounters(
    "meshauth_policy_coalesced_inline",
    "Single evaluations decided alone in their own task (nothing else in progress or queued).",
    [],
)
COALESCED_WAIT_SECONDS = Histogram(
    "meshauth_policy_coalesced_wait_seconds",
    "How long the oldest request of a coalesced batch waited for the batch to go out.",
    buckets=(0.00001, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
)


def add_many(counter: IntCounters, amount: int, *labels: str) -> None:
    """Count ``amount`` events at once (``IntCounters.add`` counts one): a batch of decisions, the
    engine calls of one batch."""
    counter.add_many(amount, *labels)
