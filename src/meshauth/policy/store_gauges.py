"""The policy service's per-store gauges, read from the live registries when /metrics is scraped."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshauth.policy.registry import Registry

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
                view = registry.describe(store)
                snap = view.snapshot
                revision.add_metric([store], float(view.loaded_revision or 0))
                policies.add_metric([store], float(view.policies or 0))
                snapshot.add_metric([store], float(snap.entities) if snap is not None and snap.current else 0.0)
        yield revision
        yield policies
        yield snapshot


REGISTRY.register(_StoreCollector())
