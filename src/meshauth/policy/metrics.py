"""The policy service's Prometheus metrics (served at ``GET /metrics``).

Counters are plain ints read at scrape time (``observability.metrics.IntCounters``: no lock on the
hot path). Per-store gauges are read from the live registries when scraped. Labels are closed sets:
endpoint, outcome, and store names (which only the admin creates).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshauth.observability.metrics import IntCounters

if TYPE_CHECKING:
    from meshauth.policy.registry import Registry

DECISIONS = IntCounters(
    "meshauth_policy_decisions", "Decisions answered, by endpoint and outcome.", ["endpoint", "outcome"]
)
ENGINE_CALLS = IntCounters("meshauth_policy_engine_calls", "Cedar is_authorized_batch calls.", ["path"])
INDEX_CACHE = IntCounters(
    "meshauth_policy_index_cache",
    "Scope-index lookups of a compiled policy subset, by outcome (hit rate: hit / (hit + miss)).",
    ["outcome"],
)
ENTITY_QUERIES = IntCounters("meshauth_policy_entity_queries", "SQL round trips made by the entity loader.", [])
DECISION_API_REFUSED = IntCounters(
    "meshauth_policy_decision_api_refused",
    "Decision requests refused by the decision API's protection (401), by error.",
    ["error"],
)

_registries: weakref.WeakSet[Registry] = weakref.WeakSet()


def track(registry: Registry) -> None:
    """Report ``registry``'s stores while it is alive."""
    _registries.add(registry)


class _StoreCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        revision = GaugeMetricFamily(
            "meshauth_policy_store_revision", "Revision this process serves, per loaded store.", labels=["store"]
        )
        policies = GaugeMetricFamily(
            "meshauth_policy_store_policies", "Policies in the active version, per loaded store.", labels=["store"]
        )
        snapshot = GaugeMetricFamily(
            "meshauth_policy_snapshot_entities",
            "Entities in the store's current snapshot (0: none, decisions use the loader).",
            labels=["store"],
        )
        for registry in list(_registries):
            for store in registry.loaded():
                info = registry.describe(store)
                snap = info["snapshot"]
                revision.add_metric([store], float(info["loaded_revision"] or 0))  # type: ignore[arg-type]
                policies.add_metric([store], float(info["policies"] or 0))  # type: ignore[arg-type]
                current = isinstance(snap, dict) and snap["current"]
                snapshot.add_metric([store], float(snap["entities"]) if current else 0.0)  # type: ignore[index]
        yield revision
        yield policies
        yield snapshot


REGISTRY.register(_StoreCollector())
