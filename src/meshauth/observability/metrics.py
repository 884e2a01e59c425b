"""Metric machinery every service shares; each service defines its own metrics (``auth.metrics``,
``policy.metrics``). Labels are small closed sets; never a user or token value."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.requests import Request
from starlette.responses import Response


class IntCounters:
    """A labelled Prometheus counter kept as plain ints and read at scrape time.

    prometheus_client's Counter takes a lock per ``inc`` (~1 µs); on the ext_authz hot path a dict of
    ints is enough (one event loop per process, so no lock is needed).
    """

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        REGISTRY.register(self)

    def add(self, *labels: str) -> None:
        self.counts[labels] += 1

    def set(self, value: int, *labels: str) -> None:
        """Publish a count kept elsewhere (a hot-path object's own int), read at scrape time."""
        self.counts[labels] = value

    def value(self, *labels: str) -> int:
        return self.counts[labels]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, count in sorted(self.counts.items()):
            family.add_metric(list(labels), count)
        yield family


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
