"""``meshauth bench --quick`` end to end: it measures, exits 0, and writes the report, plots and JSON.

Takes about two minutes on the shared 2-core machine, so it is marked ``bench`` and excluded from the
default run (``pytest -m bench tests/bench/test_harness_smoke.py``, under the benchmark lock)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.bench
@pytest.mark.timeout(400)
def test_quick_run_writes_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshauth", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=390,
    )
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "REPORT.md").read_text()
    for label in ("auth latency p95", "policy latency p95", "throughput", "cache hit rate", "batch efficiency"):
        assert f"| {label} |" in report
    (results,) = (tmp_path / "results").glob("*.json")
    doc = json.loads(results.read_text())
    assert set(doc["scenarios"]) >= {"authn_http", "authn_grpc", "authz_warm", "authz_cold", "zipf_mixed"}
    assert (tmp_path / "latency-vs-load.png").exists()
