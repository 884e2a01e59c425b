"""``meshauth bench auth --authz --warm-rounds``: the report of alternated authn / authz warm rounds."""

from __future__ import annotations

from typing import Any

from meshauth.bench.authz_warm import ratios, report


def _latency(p50: float, p95: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "non_2xx": errors, "rate": 3000.0}


def _result(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Rounds with the given (authn p95, authz warm p95), both modes alike."""
    rounds = []
    for authn, warm in pairs:
        rounds.append(
            {
                "authn": {m: _latency(0.2, authn, 1.0) for m in ("idle_poll", "plain")},
                "authz_warm": {m: _latency(0.25, warm, 1.5, 1) for m in ("idle_poll", "plain")},
            }
        )
    return {"rate": 3000, "seconds": 8, "connections": 30, "rounds": rounds}


def test_ratios_are_per_round() -> None:
    assert [round(x, 6) for x in ratios(_result([(0.5, 0.6), (0.4, 0.6)]), "idle_poll")] == [1.2, 1.5]


def test_report_gives_each_round_and_the_median_and_spread() -> None:
    text = report(_result([(0.5, 0.6), (0.4, 0.6), (0.5, 0.65)]))
    assert "| 2 | idle_poll | 0.20 / 0.40 / 1.00 | 0.25 / 0.60 / 1.50 | 1.50× | 0 / 1 |" in text
    assert "- idle_poll: p95 ratio median 1.30× (range 1.20–1.50×, target ≤ 1.3×)" in text
    assert "authz warm p95 median 0.60 ms (target ≤ 1 ms)" in text
    assert text.count("| plain |") == 3
