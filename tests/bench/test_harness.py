"""The harness's own readings: the gate's cache counters from /metrics text, and the CPU-time reader."""

from __future__ import annotations

import os
from typing import Any

from meshauth.bench import harness, machine

METRICS = """# HELP meshauth_client_cache_total Decision cache lookups, by level and result.
# TYPE meshauth_client_cache_total counter
meshauth_client_cache_total{level="l1",result="hit"} 850.0
meshauth_client_cache_total{level="l1",result="miss"} 150.0
meshauth_client_cache_total{level="l2",result="hit"} 20.0
meshauth_client_cache_total{level="l2",result="miss"} 130.0
meshauth_client_checks_total{outcome="allow",source="l1"} 850.0
"""


def test_cache_counts_from_metrics_text() -> None:
    assert harness.cache_counts(METRICS) == {"l1_hit": 850.0, "l1_miss": 150.0, "l2_hit": 20.0, "l2_miss": 130.0}
    assert harness.cache_counts("") == {"l1_hit": 0.0, "l1_miss": 0.0, "l2_hit": 0.0, "l2_miss": 0.0}


def test_cpu_seconds_of_this_process_grows() -> None:
    before = harness.cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert harness.cpu_seconds(os.getpid()) >= before > 0


def test_missing_tool_means_could_not_measure(monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(machine, "missing_tools", lambda: ["h2load"])
    assert harness.main(quick=True, out_dir=tmp_path) == 2
    assert "missing h2load" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_failed_measurement_exits_2_and_writes_nothing(monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("wrk printed no harness summary")

    monkeypatch.setattr(machine, "missing_tools", list)
    monkeypatch.setattr(harness, "run", fail)
    assert harness.main(quick=True, out_dir=tmp_path) == 2
    assert "could not measure: wrk printed no harness summary" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_recorded_commands_use_the_variables_hold_exports() -> None:
    mapping = {
        "http://127.0.0.1:4101": "$AUTHZ_URL",
        "http://127.0.0.1:41": "$WRONG",  # a prefix of another value must not win
        "/tmp/meshauth-bench-harness-x1": "$BENCH_DIR",
    }
    doc: dict[str, Any] = {
        "command": "meshauth bench",  # the top-level command names no stack value: unchanged
        "scenarios": {
            "z": {
                "paced": [
                    {"command": "HARNESS_LINES=/tmp/meshauth-bench-harness-x1/z-1.lines wrk http://127.0.0.1:4101"}
                ],
                "title": "http://127.0.0.1:4101 stays in a title",
            }
        },
    }
    out = harness.substituted(doc, mapping)
    assert out["scenarios"]["z"]["paced"][0]["command"] == "HARNESS_LINES=$BENCH_DIR/z-1.lines wrk $AUTHZ_URL"
    assert out["scenarios"]["z"]["title"] == "http://127.0.0.1:4101 stays in a title"
    assert doc["scenarios"]["z"]["paced"][0]["command"].startswith("HARNESS_LINES=/tmp")  # not modified in place


def test_steps_count_matches_the_plan() -> None:
    from meshauth.bench import scenarios

    class _Sc:
        def __init__(self, rates: tuple[int, ...], warmup: float = 0.0) -> None:
            self.rates, self.warmup = rates, warmup

    plan = scenarios.FULL
    built = [_Sc((500, 1000, 2000, 3000)), _Sc((500, 1000, 2000, 3000), 15.0)]
    # seeding line + (4 rates × 3 repeats + saturation) × 2 + a warm-up + bus 2 rates × 3 rounds × 2 + batch
    assert harness.steps(plan, built) == 1 + 13 * 2 + 1 + 12 + 1  # type: ignore[arg-type]


def test_full_plan_fits_ten_minutes_and_quick_two() -> None:
    from meshauth.bench import scenarios

    def load_seconds(plan: scenarios.Plan) -> float:
        paced = (5 * len(plan.gate_rates) + len(plan.batch_rates)) * plan.repeats * plan.seconds
        bus = len(plan.bus_rates) * plan.bus_rounds * 2 * plan.seconds
        batch = plan.batch_path_rounds * 2 * plan.batch_path_seconds
        # six gate scenarios besides the batch one: authn HTTP and gRPC, authz warm, cold, Zipf, policy single
        paced += len(plan.gate_rates) * plan.repeats * plan.seconds
        return paced + 7 * plan.saturation_seconds + plan.zipf_warmup_seconds + bus + batch

    # Load-generator time only; start-up, seeding and per-run overhead measured at ~60-90 s on top.
    assert load_seconds(scenarios.FULL) < 480
    assert load_seconds(scenarios.QUICK) < 75
