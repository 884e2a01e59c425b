"""The policy service's per-store gauges, published from the live registries (before each scrape,
and once a second in every worker when several share the metric files: ``observability.metrics``).

With several workers: the revision is the oldest any live worker serves (a worker lagging behind an
admin change shows), policies and snapshot entities the largest.
"""

from __future__ import annotations

import weakref

from prometheus_client import Gauge

from meshauth.observability.metrics import publisher
from meshauth.policy.registry import Registry

REVISION = Gauge(
    "meshauth_policy_store_revision",
    "Revision this process serves, per loaded store (several workers: the oldest).",
    ["store"],
    multiprocess_mode="livemin",
)
POLICIES = Gauge(
    "meshauth_policy_store_policies",
    "Policies in the active version, per loaded store.",
    ["store"],
    multiprocess_mode="livemax",
)
SNAPSHOT = Gauge(
    "meshauth_policy_snapshot_entities",
    "Entities in the store's current snapshot (0: none, decisions use the loader).",
    ["store"],
    multiprocess_mode="livemax",
)

_registries: weakref.WeakSet[Registry] = weakref.WeakSet()
_shown: set[str] = set()


def track(registry: Registry) -> None:
    """Report ``registry``'s stores while it is alive."""
    _registries.add(registry)


def _publish() -> None:
    loaded: set[str] = set()
    for registry in list(_registries):
        for store in registry.loaded():
            view = registry.describe(store)
            snap = view.snapshot
            REVISION.labels(store).set(float(view.loaded_revision or 0))
            POLICIES.labels(store).set(float(view.policies or 0))
            SNAPSHOT.labels(store).set(float(snap.entities) if snap is not None and snap.current else 0.0)
            loaded.add(store)
    for store in _shown - loaded:
        # Unloaded: zero first (a worker's metric file keeps a label set's last value), then gone
        # from this process's registry.
        for gauge in (REVISION, POLICIES, SNAPSHOT):
            gauge.labels(store).set(0.0)
            gauge.remove(store)
    _shown.clear()
    _shown.update(loaded)


publisher(_publish)
