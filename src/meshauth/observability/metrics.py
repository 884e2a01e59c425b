"""Metric machinery every service shares; each service defines its own metrics (``auth.metrics``,
``policy.metrics``, ``client._metrics``). Labels are small closed sets; never a user or token value.

Two kinds of hot-path metric, kept as plain Python numbers in the process that changes them:
``IntCounters`` (a labelled counter) and ``IntHistogram``. prometheus_client's own ``Counter.inc``
takes a lock (~0.3 µs, ~1 µs in multiprocess mode); these cost ~0.15 µs, ~0.2 µs with every worker
process writing its values to a file (``multiprocess``), which is how a scrape of one worker shows
the whole service. Everything else uses prometheus_client directly; a ``Gauge`` states its
``multiprocess_mode``.

Values some object keeps itself (a cache's hit count, a set's size) are copied into metrics by
*publishers* (``publisher``): before every scrape in the worker that answers it, and, when several
workers share the files, once a second in every worker (a daemon thread), so a scrape also shows the
other workers' values (at most a second old).
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, values
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from meshauth.observability import multiprocess

log = logging.getLogger(__name__)
# How prometheus_client writes a bucket bound (``le``): 0.001, 1.0, +Inf.
_le = cast("Callable[[float], str]", floatToGoString)

PUBLISH_INTERVAL = 1.0  # seconds between publishes in each worker, in multiprocess mode

# Latency buckets (seconds) for requests and decisions: fine below 10 ms, where the targets are
# (auth p95 3 ms, policy p95 5 ms), coarse above.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)


_ours: weakref.WeakSet[IntCounters | IntHistogram] = weakref.WeakSet()


class IntCounters:
    """A labelled Prometheus counter kept as plain ints (one event loop per process: no lock).

    Exposed as ``<name>_total``. In multiprocess mode each change is also written to this process's
    value file (``multiprocess.ValueFile``), which is what ``/metrics`` then reads.
    """

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._file = multiprocess.value_file("counter") if multiprocess.active() else None
        self._slots: dict[tuple[str, ...], int] = {}
        if not labels:
            self.set(0)  # an unlabelled counter is exported (as 0) before its first event
        REGISTRY.register(self)
        _ours.add(self)

    def _enter_multiprocess(self) -> None:
        self._file = multiprocess.value_file("counter")
        self._slots = {}
        for labels, n in list(self.counts.items()):
            self._write(labels, n)

    def add(self, *labels: str) -> None:
        n = self.counts[labels] + 1
        self.counts[labels] = n
        if self._file is not None:
            self._write(labels, n)

    def add_many(self, amount: int, *labels: str) -> None:
        """Count ``amount`` events at once (a batch of decisions)."""
        n = self.counts[labels] + amount
        self.counts[labels] = n
        if self._file is not None:
            self._write(labels, n)

    def set(self, value: int, *labels: str) -> None:
        """Publish a count kept elsewhere (a hot-path object's own int); see ``publisher``."""
        self.counts[labels] = value
        if self._file is not None:
            self._write(labels, value)

    def value(self, *labels: str) -> int:
        return self.counts[labels]

    def _write(self, labels: tuple[str, ...], value: float) -> None:
        assert self._file is not None
        slot = self._slots.get(labels)
        if slot is None:
            key = mmap_key(self.name, self.name + "_total", self.labels, list(labels), self.documentation)
            slot = self._slots[labels] = self._file.slot(key)
        self._file.view[slot] = value

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, count in sorted(self.counts.items()):
            family.add_metric(list(labels), count)
        yield family


class _Series:
    """One label set's histogram: per-bucket counts (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("buckets", "slots", "sum", "sum_slot")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0
        self.slots: list[int] = []
        self.sum_slot = -1


class IntHistogram:
    """A labelled Prometheus histogram kept as plain numbers, like ``IntCounters``.

    Exposed as ``<name>_bucket``/``_sum``/``_count``; ``buckets`` are upper bounds (+Inf is added).
    """

    def __init__(
        self, name: str, documentation: str, labels: list[str], *, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.series: dict[tuple[str, ...], _Series] = {}
        self._file = multiprocess.value_file("histogram") if multiprocess.active() else None
        REGISTRY.register(self)
        _ours.add(self)

    def _enter_multiprocess(self) -> None:
        self._file = multiprocess.value_file("histogram")
        for labels, series in list(self.series.items()):
            self._bind(labels, series)
            for slot, n in zip(series.slots, series.buckets, strict=True):
                self._file.view[slot] = n
            self._file.view[series.sum_slot] = series.sum

    def observe(self, value: float, *labels: str) -> None:
        series = self.series.get(labels) or self._new(labels)
        i = bisect.bisect_left(self.bounds, value)
        n = series.buckets[i] + 1
        series.buckets[i] = n
        series.sum += value
        if self._file is not None:
            view = self._file.view
            view[series.slots[i]] = n
            view[series.sum_slot] = series.sum

    def count(self, *labels: str) -> int:
        series = self.series.get(labels)
        return sum(series.buckets) if series is not None else 0

    def _new(self, labels: tuple[str, ...]) -> _Series:
        series = _Series(len(self.bounds) + 1)
        if self._file is not None:
            self._bind(labels, series)
        self.series[labels] = series
        return series

    def _bind(self, labels: tuple[str, ...], series: _Series) -> None:
        """Give ``series`` its slots in this process's value file."""
        assert self._file is not None
        names, values = [*self.labels, "le"], list(labels)
        series.slots = []
        for bound in (*self.bounds, float("inf")):
            key = mmap_key(self.name, self.name + "_bucket", names, [*values, _le(bound)], self.documentation)
            series.slots.append(self._file.slot(key))
        key = mmap_key(self.name, self.name + "_sum", self.labels, values, self.documentation)
        series.sum_slot = self._file.slot(key)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, series in sorted(self.series.items()):
            cumulative, running = [], 0
            for bound, n in zip((*self.bounds, float("inf")), series.buckets, strict=True):
                running += n
                cumulative.append((_le(bound), float(running)))
            family.add_metric(list(labels), cumulative, series.sum)
        yield family


# --- publishers -------------------------------------------------------------------------------------

_publishers: list[weakref.ref[Any] | weakref.WeakMethod[Any]] = []
_publisher_lock = threading.Lock()
_thread: threading.Thread | None = None


def publisher(callback: Callable[[], None]) -> None:
    """Run ``callback`` before each scrape (and every ``PUBLISH_INTERVAL`` in multiprocess mode) for as
    long as it (or, for a bound method, its object) is alive. It must be quick and must not block."""
    ref: weakref.ref[Any] | weakref.WeakMethod[Any]
    ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else weakref.ref(callback)
    with _publisher_lock:
        _publishers.append(ref)
    if multiprocess.active():
        _start_thread()


def publish() -> None:
    with _publisher_lock:
        _publishers[:] = [ref for ref in _publishers if ref() is not None]
        callbacks = [ref() for ref in _publishers]
    for callback in callbacks:
        if callback is None:
            continue
        try:
            callback()
        except Exception:  # a publisher's bug must not take /metrics or the thread down
            log.exception("metrics publisher %r failed", callback)


def _start_thread() -> None:
    global _thread  # one publishing thread per process
    with _publisher_lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_publish_forever, name="meshauth-metrics", daemon=True)
    _thread.start()


def _publish_forever() -> None:
    stop = threading.Event()
    while not stop.wait(PUBLISH_INTERVAL):
        publish()


def enter_worker() -> None:
    """First thing in a worker process granian forked: if ``serve`` prepared a metrics directory,
    write every metric to this process's files from now on — ours, and prometheus_client's, whose
    values were created in the supervisor as single-process ones (``values.ValueClass`` is meant to be
    replaced; each existing value is re-created in place, so objects call sites hold stay valid)."""
    if not multiprocess.enter_worker():
        return
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        for collector in list(REGISTRY._collector_to_names):
            if isinstance(collector, MetricWrapperBase):
                _recreate_values(collector)
    for metric in list(_ours):
        metric._enter_multiprocess()
    with _publisher_lock:
        any_publisher = bool(_publishers)
    if any_publisher:
        _start_thread()


def _recreate_values(metric: MetricWrapperBase) -> None:
    if not metric._labelnames:
        metric._metric_init()  # type: ignore[no-untyped-call]
        return
    with metric._lock:
        children = list(metric._metrics.values())
    for child in children:
        child._metric_init()  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """The text ``/metrics`` serves: this process's registry, or every worker's values merged."""
    publish()
    if multiprocess.active():
        return generate_latest(multiprocess.merged_registry())
    return generate_latest()


async def metrics_endpoint(_request: Request) -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
