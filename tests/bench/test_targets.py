"""The Phase 2 targets table: exact labels, the value each row reads, and the pass/miss rule."""

from __future__ import annotations

import pytest

from meshauth.bench import targets
from tests.bench.results_doc import doc

LABELS = ["auth latency p95", "policy latency p95", "throughput", "cache hit rate", "batch efficiency"]


def _by_label(r: dict) -> dict[str, targets.Row]:  # type: ignore[type-arg]
    return {row.label: row for row in targets.rows(r)}


def test_the_five_targets_come_first_labelled_exactly() -> None:
    assert [row.label for row in targets.rows(doc())][:5] == LABELS


def test_values_read_from_the_right_runs() -> None:
    rows = _by_label(doc())
    assert rows["auth latency p95"].value == 2.5  # authn HTTP at 3,000 req/s
    assert rows["policy latency p95"].value == 0.8  # policy single at 1,000 req/s
    assert rows["throughput"].value == 4000  # Zipf mixed, closed loop
    assert rows["cache hit rate"].value == pytest.approx(0.87)  # (850 + 20) / 1,000
    assert rows["batch efficiency"].value == pytest.approx(10.0)
    assert [rows[label].verdict for label in LABELS] == ["pass"] * 5
    assert rows["auth latency p95, gRPC"].verdict == "miss"  # 8 ms
    assert rows["authz latency p95, cold"].verdict == "miss"


def test_boundaries() -> None:
    r = doc()
    r["scenarios"]["authn_http"]["paced"][1]["percentiles"]["95"] = 3.0
    assert _by_label(r)["auth latency p95"].verdict == "pass"
    r["scenarios"]["authn_http"]["paced"][1]["percentiles"]["95"] = 3.01
    assert _by_label(r)["auth latency p95"].verdict == "miss"
    r["scenarios"]["zipf_mixed"]["cache"] = {"l1_hit": 800.0, "l1_miss": 200.0, "l2_hit": 0.0, "l2_miss": 200.0}
    assert _by_label(r)["cache hit rate"].verdict == "miss"  # the goal is more than 80 %
    r["scenarios"]["zipf_mixed"]["saturation"]["achieved"] = 2999.0
    assert _by_label(r)["throughput"].verdict == "miss"
    r["scenarios"]["policy_batch64"]["saturation"]["policy_cpu_seconds"] = 2.31
    assert _by_label(r)["batch efficiency"].verdict == "miss"


def test_a_run_with_errors_never_passes() -> None:
    r = doc()
    run = r["scenarios"]["authn_http"]["paced"][1]
    run["errors"] = int(run["requests"] * 0.02)
    row = _by_label(r)["auth latency p95"]
    assert row.verdict == "miss"
    assert "errors" in row.measured


@pytest.mark.parametrize("scenario", ["authn_http", "policy_single", "zipf_mixed", "policy_batch64"])
def test_missing_measurements_are_misses(scenario: str) -> None:
    r = doc()
    del r["scenarios"][scenario]
    missed = [row for row in targets.rows(r) if row.value is None]
    assert missed
    assert all(row.verdict == "miss" and "not measured" in row.measured for row in missed)


def test_hit_rate_without_lookups() -> None:
    assert targets.hit_rate({"l1_hit": 0.0, "l1_miss": 0.0}) is None
