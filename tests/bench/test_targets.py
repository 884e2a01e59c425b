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
    r["scenarios"]["zipf_mixed"]["paced"][1]["cache"] = {"l1_hit": 800.0, "l1_miss": 200.0, "l2_hit": 0.0}
    assert _by_label(r)["cache hit rate"].verdict == "miss"  # the goal is more than 80 %
    r["scenarios"]["zipf_mixed"]["saturation"]["achieved"] = 2999.0
    assert _by_label(r)["throughput"].verdict == "miss"
    r["batch_path"]["ratio_path"] = 9.99
    assert _by_label(r)["batch efficiency"].verdict == "miss"
    r["bus"]["on"][1]["percentiles"]["95"] = 0.55  # 1.10× the 0.50 ms off
    assert _by_label(r)["auth latency p95, audit on / off"].verdict == "pass"
    r["bus"]["on"][1]["percentiles"]["95"] = 0.56
    assert _by_label(r)["auth latency p95, audit on / off"].verdict == "miss"


def test_hit_rate_is_the_steady_state_at_3000_with_the_cold_start_beside_it() -> None:
    row = _by_label(doc())["cache hit rate"]
    # (850 + 20) / 1,000 at 3,000 req/s: not the 1,000 req/s point (31 %), not the warm-up (40 %)
    assert row.value == pytest.approx(0.87)
    assert "steady state" in row.measured
    assert "cold start 40.0%" in row.measured
    assert "10,000 users × 100,000 resources" in row.measured


def test_batch_efficiency_is_issue_10s_definition() -> None:
    r = doc()
    # The wrk-driven policy runs' service CPU no longer makes the figure: only client + service does.
    r["scenarios"]["policy_batch64"]["saturation"]["policy_cpu_seconds"] = 100.0
    row = _by_label(r)["batch efficiency"]
    assert row.value == pytest.approx(10.0)
    assert "client + policy service" in row.measured
    assert "rounds 9.5, 10.5" in row.measured
    del r["batch_path"]
    assert _by_label(r)["batch efficiency"].verdict == "miss"


def test_explicit_batches_are_shown_beside_the_figure_and_do_not_set_the_verdict() -> None:
    r = doc()
    r["batch_path"]["ratio_path"] = 6.0
    r["batch_path"]["ratio_path_explicit"] = 12.0
    row = _by_label(r)["batch efficiency"]
    assert row.value == pytest.approx(6.0) and row.verdict == "miss"
    assert "explicit check_many batches of 64: 12.0×" in row.measured


def test_bus_row_reads_the_median_p95s_at_3000() -> None:
    row = _by_label(doc())["auth latency p95, audit on / off"]
    assert row.value == pytest.approx(1.08)
    assert row.verdict == "pass"
    assert "0.54 vs 0.50 ms" in row.measured
    r = doc()
    r["bus"]["on"][1]["errors"] = 1000  # > 1 % of 24,000
    assert _by_label(r)["auth latency p95, audit on / off"].verdict == "miss"
    del r["bus"]
    assert _by_label(r)["auth latency p95, audit on / off"].value is None


def test_a_run_with_errors_never_passes() -> None:
    r = doc()
    run = r["scenarios"]["authn_http"]["paced"][1]
    run["errors"] = int(run["requests"] * 0.02)
    row = _by_label(r)["auth latency p95"]
    assert row.verdict == "miss"
    assert "errors" in row.measured


@pytest.mark.parametrize("scenario", ["authn_http", "policy_single", "zipf_mixed"])
def test_missing_measurements_are_misses(scenario: str) -> None:
    r = doc()
    del r["scenarios"][scenario]
    missed = [row for row in targets.rows(r) if row.value is None]
    assert missed
    assert all(row.verdict == "miss" and "not measured" in row.measured for row in missed)


def test_hit_rate_without_lookups() -> None:
    assert targets.hit_rate({"l1_hit": 0.0, "l1_miss": 0.0}) is None
