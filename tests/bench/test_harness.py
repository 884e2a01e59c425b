"""The harness's own readings: the gate's cache counters from /metrics text, and the CPU-time reader."""

from __future__ import annotations

import os

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
