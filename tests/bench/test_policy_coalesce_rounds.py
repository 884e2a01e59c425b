"""The interleaved coalescing benchmark's own logic: CPU accounting, the report, the body-reading floor."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from meshauth.bench import policy_coalesce_rounds as rounds
from meshauth.bench.policy_floor import BodyFloor


def test_cpu_seconds_counts_this_process_tree() -> None:
    before = rounds.cpu_seconds(os.getpid())
    deadline = before + 0.05
    while rounds.cpu_seconds(os.getpid()) < deadline:  # burn a little CPU; ticks are 10 ms
        sum(range(10_000))
    assert rounds.cpu_seconds(os.getpid()) >= deadline


def _round(p95_off: float, p95_on: float) -> dict[str, Any]:
    fixed = {"p50_ms": 0.5, "p99_ms": 9.0, "load": 3.0, "cpu_us_per_request": 300.0, "command": "driver"}
    return {
        "fixed_off": {**fixed, "p95_ms": p95_off},
        "fixed_on": {**fixed, "p95_ms": p95_on, "cpu_us_per_request": 270.0},
        "single_off": {"requests_per_s": 6000.0, "command": "wrk singles"},
        "single_on": {"requests_per_s": 7200.0},
        "batch_off": {"decisions_per_s": 30000.0, "command": "wrk batches"},
        "batch_on": {"decisions_per_s": 30000.0},
        "single_floor": {"requests_per_s": 40000.0},
        "single_floor_body": {"requests_per_s": 18000.0},
    }


def test_report_gives_every_round_and_counts_where_coalescing_was_worse() -> None:
    per_round = [_round(1.0, 2.0), _round(3.0, 1.5), _round(2.0, 2.0)]
    r: dict[str, Any] = {"rounds": 3, "seconds": 3, "rate": 1000, "priority": True}
    for key in per_round[0]:
        r[key] = [one[key] for one in per_round]
    text = rounds.report(r)
    assert text.count("\n| ") == 4  # header + three rounds
    assert "p95 worse with coalescing in 1 of 3 rounds" in text
    assert "**1.20×**" in text and "0.20 → 0.24" in text and "| 0.40 |" in text
    assert "nice -10" in text


def test_report_says_which_setting_went_first_and_what_the_coalescer_gathered() -> None:
    per_round = [_round(1.0, 2.0), _round(3.0, 1.5)]
    per_round[0]["fixed_on"]["coalesced"] = {"inline_total": 2940.0, "batch_size_sum": 60.0}
    per_round[0]["single_on"]["coalesced"] = {
        "batch_size_count": 6000.0,
        "batch_size_sum": 34800.0,
        "batch_size_bucket_1": 2700.0,
    }
    r: dict[str, Any] = {
        "rounds": 2,
        "seconds": 3,
        "rate": 1000,
        "priority": False,
        "order": [["off", "on"], ["on", "off"]],
    }
    for key in per_round[0]:
        r[key] = [one[key] for one in per_round]
    text = rounds.report(r)
    assert "| 1 | off | 3.0 |" in text and "| 2 | on | 3.0 |" in text
    assert "round 1, coalescing on: at the fixed rate 2,940 decided alone in their own task, 60 queued" in text
    assert "6,000 batches of 5.8 on average (45% of them of one)" in text
    assert "round 2, coalescing on" not in text  # no counts for that round: nothing made up


def test_coalescing_counts_are_read_from_the_exposition() -> None:
    text = (
        "meshauth_policy_coalesced_inline_total 12.0\n"
        'meshauth_policy_coalesced_batch_size_bucket{le="1.0"} 3.0\n'
        'meshauth_policy_coalesced_batch_size_bucket{le="2.0"} 5.0\n'
        "meshauth_policy_coalesced_batch_size_count 7.0\n"
        "meshauth_policy_coalesced_batch_size_sum 20.0\n"
    )
    assert rounds.coalesced_counts(text) == {
        "inline_total": 12.0,
        "batch_size_bucket_1": 3.0,
        "batch_size_count": 7.0,
        "batch_size_sum": 20.0,
    }
    assert rounds.since({"x": 1.0}, {"x": 4.0, "y": 2.0}) == {"x": 3.0, "y": 2.0}


def test_body_floor_reads_the_body_then_answers() -> None:
    calls: list[str] = []

    class Protocol:
        async def __call__(self) -> bytes:
            calls.append("read")
            return b"{}"

        def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            calls.append(f"answer {status} {body[:12]!r}")

    asyncio.run(BodyFloor().__rsgi__(object(), Protocol()))
    assert calls == ["read", "answer 200 b'{\"decision\":'"]
