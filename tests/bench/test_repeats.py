"""Folding a point's repeats: medians, spread, summed counts, and refusals of nonsense input."""

from __future__ import annotations

from typing import Any

import pytest

from meshauth.bench import repeats


def _run(offered: float | None, p95: float, achieved: float, **extra: Any) -> dict[str, Any]:
    return {
        "command": f"wrk #{offered}",
        "offered": offered,
        "achieved": achieved,
        "requests": 1000,
        "errors": extra.pop("errors", 0),
        "percentiles": {"50": p95 / 4, "95": p95, "99": p95 * 2},
        "statuses": extra.pop("statuses", {"200": 1000}),
        "socket_errors": {"connect": 0, "read": 1, "write": 0, "timeout": 0},
        **extra,
    }


def test_median_spread_and_sums() -> None:
    point = repeats.combine([_run(3000, 2.0, 2900), _run(3000, 9.0, 2500), _run(3000, 3.0, 2990, errors=4)])
    assert point["percentiles"]["95"] == 3.0  # the median, not the mean (4.67) a stall would drag up
    assert point["achieved"] == 2900
    assert point["spread"]["95"] == [2.0, 9.0]
    assert point["spread"]["50"] == [0.5, 2.25]
    assert (point["requests"], point["errors"], point["repeats"]) == (3000, 4, 3)
    assert point["statuses"] == {"200": 3000}
    assert point["socket_errors"]["read"] == 3
    assert len(point["runs"]) == 3


def test_statuses_and_cache_counters_are_summed() -> None:
    a = _run(1000, 1.0, 990, statuses={"200": 900, "403": 100}, cache={"l1_hit": 10.0, "l1_miss": 90.0})
    b = _run(1000, 1.0, 990, statuses={"200": 950, "503": 50}, cache={"l1_hit": 30.0, "l1_miss": 70.0})
    point = repeats.combine([a, b])
    assert point["statuses"] == {"200": 1850, "403": 100, "503": 50}
    assert point["cache"] == {"l1_hit": 40.0, "l1_miss": 160.0}


def test_runs_without_percentiles_do_not_poison_the_median() -> None:
    empty = _run(3000, 1.0, 0.0)
    empty["percentiles"] = {}
    point = repeats.combine([empty, _run(3000, 4.0, 2900)])
    assert point["percentiles"]["95"] == 4.0


def test_by_rate_groups_interleaved_repeats() -> None:
    runs = [_run(r, p, r) for r, p in ((500, 1.0), (3000, 3.0), (500, 2.0), (3000, 5.0), (500, 3.0), (3000, 4.0))]
    points = repeats.by_rate(runs)
    assert [p["offered"] for p in points] == [500, 3000]
    assert [p["percentiles"]["95"] for p in points] == [2.0, 4.0]


def test_refusals() -> None:
    with pytest.raises(ValueError, match="no runs"):
        repeats.combine([])
    with pytest.raises(ValueError, match="different offered rates"):
        repeats.combine([_run(500, 1.0, 500), _run(3000, 1.0, 3000)])
