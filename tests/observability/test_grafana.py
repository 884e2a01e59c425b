"""``deploy/grafana/meshauth.json`` queries only metrics that exist: every metric name in its PromQL is
exported by a served auth or policy service, or defined by the service client or the message bus
(the bus's workers serve no /metrics; its backlog gauges are on the publishing services')."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from prometheus_client import REGISTRY

import meshauth.auth.app
import meshauth.bus.metrics
import meshauth.client
import meshauth.policy.app
from meshauth.observability.scrape import fetch
from tests.served import call, serve

# Importing these defines every metric of the services, the client and the bus in this process.
DEFINING = (meshauth.auth.app, meshauth.bus.metrics, meshauth.client, meshauth.policy.app)
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "meshauth.json"
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def expressions(node: Any) -> Iterator[str]:
    """Every ``expr`` in the dashboard, rows' nested panels included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges and
    ``by (…)`` lists that are not function calls, keywords or numbers."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\boffset\s+\S+", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names: set[str] = set()
    for found in re.finditer(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = found.group()
        rest = expr[found.end() :].lstrip()
        if not rest.startswith("(") and name not in _KEYWORDS:
            names.add(name)
    return names


def defined_sample_names() -> set[str]:
    """Sample names of every metric defined in this process (the client's among them), used or not."""
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


@pytest.fixture(scope="module")
def served_names(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> set[str]:
    """Sample names on the live /metrics of a served auth and a served policy service, after traffic."""
    with (
        serve("auth", "asgi", tmp_path_factory.mktemp("auth"), valkey_url) as auth,
        serve("policy", "rsgi", tmp_path_factory.mktemp("policy"), valkey_url) as policy,
    ):
        call("GET", auth.url + "/ext_authz/x")
        with grpc.insecure_channel(f"127.0.0.1:{auth.grpc_port}") as channel:
            external_auth_pb2_grpc.AuthorizationStub(channel).Check(external_auth_pb2.CheckRequest(), timeout=10)
        body = b'{"subject":{"type":"U","id":"u"},"action":{"name":"v"},"resource":{"type":"D","id":"d"}}'
        call("POST", policy.url + "/access/v1/evaluation", body=body)
        # The audit events of those calls reach Redis a few milliseconds later (the producer's buffer).
        deadline = time.monotonic() + 10.0
        while True:
            names: set[str] = set()
            for served in (auth, policy):
                names |= set(fetch(served.url + "/metrics").values)
            if "meshauth_bus_published_total" in names or time.monotonic() > deadline:
                return names
            time.sleep(0.05)


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(a_bucket{endpoint!="/x", le=~"0.1"}[$__rate_interval])))'
        " / on (x) group_left (y) b_total + min(c) * 2 offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_every_metric_the_dashboard_queries_exists(served_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(e) for e in expressions(dashboard)))
    assert len(used) > 20
    missing = sorted(used - served_names - defined_sample_names())
    assert missing == []


def test_service_metrics_the_dashboard_queries_are_on_live_metrics(served_names: set[str]) -> None:
    """The auth and policy services' own metrics come from their live /metrics, not only definitions."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(e) for e in expressions(dashboard)))
    service = {n for n in used if not n.startswith("meshauth_client_")}
    # Label sets that only appear once their event happened (no client-side traffic here, no index use,
    # no 5xx): defined, checked above, but not necessarily on a fresh service's page.
    rarely_seen = {
        "meshauth_policy_index_cache_total",
        "meshauth_policy_entity_queries_total",
        "meshauth_policy_entity_cache_total",  # stored entities looked up (none in a fresh store)
        "meshauth_policy_engine_calls_total",  # none while a scope-only store is answered from its table
        "meshauth_bus_spooled_total",  # Redis unreachable
        "meshauth_bus_dropped_total",  # buffer and spool full, or an oversized event
    }
    assert sorted(service - served_names - rarely_seen) == []


def test_the_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "meshauth-overview"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")")
