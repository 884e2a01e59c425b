# mypy: disable-error-code="no-untyped-call"
"""Metrics of a service served by several granian workers: one scrape shows every worker's counts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from meshauth.observability.routes import OTHER
from tests.served import Served, call, serve

DECISION = "/access/v1/evaluation"
BODY = json.dumps(
    {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}, "resource": {"type": "Doc", "id": "d"}}
).encode()


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[tuple[Served, Path]]:
    var = tmp_path_factory.mktemp("policy")
    metrics_dir = var / "metrics"
    env = {"MESHAUTH_POLICY_WORKERS": "2", "MESHAUTH_METRICS_DIR": str(metrics_dir)}
    with serve("policy", "rsgi", var, valkey_url, **env) as served:
        yield served, metrics_dir


def scrape(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = call("GET", served.url + "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def per_worker_requests(metrics_dir: Path) -> dict[str, float]:
    """Requests to the decision endpoint each worker process wrote to its own file."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("histogram_fast-*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for s in metric.samples:
                if s.name.endswith("_count") and s.labels.get("endpoint") == DECISION:
                    counts[path.name] = counts.get(path.name, 0.0) + s.value
    return counts


def test_one_scrape_sums_the_requests_every_worker_served(policy: tuple[Served, Path]) -> None:
    """Requests spread over two workers; a single scrape counts all of them (requests and decisions)."""
    served, metrics_dir = policy
    before = scrape(served)
    sent = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        # New connection per request (urllib): the kernel hands them to whichever worker accepts first.
        while len([n for n in per_worker_requests(metrics_dir).values() if n > 0]) < 2:
            assert time.monotonic() < deadline, "the requests never reached a second worker"
            statuses = list(pool.map(lambda _: call("POST", served.url + DECISION, body=BODY)[0], range(40)))
            assert set(statuses) == {200}, statuses
            sent += len(statuses)
    after = scrape(served)
    name = "meshauth_http_request_duration_seconds_count"
    assert total(after, name, endpoint=DECISION) - total(before, name, endpoint=DECISION) == sent
    assert sum(per_worker_requests(metrics_dir).values()) == total(after, name, endpoint=DECISION)
    decided = total(after, "meshauth_policy_decisions_total", endpoint="evaluation")
    assert decided - total(before, "meshauth_policy_decisions_total", endpoint="evaluation") == sent


def test_distinct_paths_do_not_grow_the_label_set(policy: tuple[Served, Path]) -> None:
    """A flood of unknown paths lands under one ``other`` label, not one label per path."""
    served, _ = policy
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda i: call("GET", f"{served.url}/nope/{i}/x")[0], range(300)))
    assert statuses == {404}
    after = scrape(served)
    endpoints = {dict(ls).get("endpoint") for (n, ls) in after if n == "meshauth_http_request_duration_seconds_count"}
    assert not any(e is not None and e.startswith("/nope") for e in endpoints)
    assert total(after, "meshauth_http_request_duration_seconds_count", endpoint=OTHER, status="4xx") >= 300
    assert len(endpoints) < 20


def test_request_latency_has_conventional_names_and_buckets(policy: tuple[Served, Path]) -> None:
    """The latency histogram is in seconds, with cumulative buckets ending at +Inf equal to the count."""
    served, _ = policy
    call("POST", served.url + DECISION, body=BODY)
    after = scrape(served)
    labels = {"endpoint": DECISION, "method": "POST", "status": "2xx"}
    count = total(after, "meshauth_http_request_duration_seconds_count", **labels)
    assert count >= 1
    assert total(after, "meshauth_http_request_duration_seconds_bucket", le="+Inf", **labels) == count
    assert 0 < total(after, "meshauth_http_request_duration_seconds_sum", **labels) < count * 10
