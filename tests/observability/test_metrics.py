"""Hot-path counters and histograms in one process, and publishers (values copied in at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from meshauth.observability import metrics
from meshauth.observability.metrics import IntCounters, IntHistogram, exposition, publisher


@pytest.fixture(autouse=True)
def unregister() -> Iterator[None]:
    before = set(REGISTRY._collector_to_names)
    yield
    for collector in set(REGISTRY._collector_to_names) - before:
        REGISTRY.unregister(collector)


def test_counters_are_exposed_with_total() -> None:
    c = IntCounters("meshauth_test_events", "Events.", ["kind"])
    c.add("a")
    c.add_many(4, "a")
    c.set(3, "b")
    assert c.value("a") == 5
    assert REGISTRY.get_sample_value("meshauth_test_events_total", {"kind": "a"}) == 5
    assert REGISTRY.get_sample_value("meshauth_test_events_total", {"kind": "b"}) == 3


def test_histogram_buckets_are_cumulative_and_in_seconds() -> None:
    h = IntHistogram("meshauth_test_latency_seconds", "Latency.", ["endpoint"], buckets=(0.001, 0.01))
    for v in (0.0001, 0.001, 0.002, 3.0):
        h.observe(v, "/x")
    get = REGISTRY.get_sample_value
    assert get("meshauth_test_latency_seconds_bucket", {"endpoint": "/x", "le": "0.001"}) == 2
    assert get("meshauth_test_latency_seconds_bucket", {"endpoint": "/x", "le": "0.01"}) == 3
    assert get("meshauth_test_latency_seconds_bucket", {"endpoint": "/x", "le": "+Inf"}) == 4
    assert get("meshauth_test_latency_seconds_count", {"endpoint": "/x"}) == 4
    assert get("meshauth_test_latency_seconds_sum", {"endpoint": "/x"}) == pytest.approx(3.0031)
    assert h.count("/x") == 4


def test_a_publisher_runs_before_each_scrape() -> None:
    c = IntCounters("meshauth_test_published", "Published.", [])
    source = {"n": 0}

    def copy() -> None:
        c.set(source["n"])

    publisher(copy)
    source["n"] = 41
    assert b"meshauth_test_published_total 41.0" in exposition()


def test_a_publisher_goes_with_its_object() -> None:
    """A bound method is held weakly: once its object is gone, it is no longer called."""
    calls: list[int] = []

    class Source:
        def publish(self) -> None:
            calls.append(1)

    s = Source()
    publisher(s.publish)
    metrics.publish()
    del s
    metrics.publish()
    assert calls == [1]


def test_a_failing_publisher_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    publisher(broken)
    assert b"# HELP" in exposition()
    assert "metrics publisher" in caplog.text
    metrics._publishers[:] = [r for r in metrics._publishers if r() is not broken]


def test_no_call_site_writes_counter_internals() -> None:
    """Counters change through their methods (add, add_many, set), never by writing ``.counts`` from a call
    site: in multiprocess mode only the methods reach the file a scrape reads."""
    import re
    from pathlib import Path

    import meshauth

    root = Path(meshauth.__file__).parent
    own = root / "observability" / "metrics.py"
    write = re.compile(r"\.counts\[[^\]]*\]\s*[-+]?=(?!=)")
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path != own
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if write.search(line)
    ]
    assert found == []
