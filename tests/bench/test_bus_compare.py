"""Bus on vs off: the alternation order, every (round, rate, mode) driven once, and the ratio read."""

from __future__ import annotations

from typing import Any

from meshauth.bench import bus_compare


def test_modes_alternate_and_swap_order_every_round() -> None:
    calls: list[tuple[str, float]] = []

    def drive(mode: str, rate: float, seconds: float) -> dict[str, Any]:
        calls.append((mode, rate))
        p95 = {"off": 1.0, "on": 1.2}[mode] * (1 + len(calls) / 100)
        return {
            "command": "wrk",
            "offered": rate,
            "achieved": rate,
            "requests": 100,
            "errors": 0,
            "percentiles": {"50": p95 / 2, "95": p95, "99": p95 * 2},
        }

    doc = bus_compare.run(drive, (1000, 3000), 4, 3)
    assert calls == [
        ("off", 1000), ("on", 1000), ("off", 3000), ("on", 3000),
        ("on", 1000), ("off", 1000), ("on", 3000), ("off", 3000),
        ("off", 1000), ("on", 1000), ("off", 3000), ("on", 3000),
    ]  # fmt: skip
    assert [p["offered"] for p in doc["on"]] == [1000, 3000]
    assert doc["on"][1]["repeats"] == 3
    ratio = bus_compare.ratio(doc, 3000)
    assert ratio is not None and 1.15 < ratio < 1.25


def test_ratio_missing_points() -> None:
    assert bus_compare.ratio({}, 3000) is None
    point = {"offered": 3000, "percentiles": {"95": 0.0}}
    assert bus_compare.ratio({"on": [point], "off": [point]}, 3000) is None  # no division by a zero p95
    assert bus_compare.ratio({"on": [point], "off": [point]}, 1000) is None
