"""REPORT.md and the results JSON from a results document: the targets table as the issue names it,
the plots linked, every command line listed."""

from __future__ import annotations

import json
from pathlib import Path

from meshauth.bench import report
from tests.bench.results_doc import doc


def test_table_has_one_row_per_target_with_pass_or_miss() -> None:
    lines = report.table(doc())
    assert lines[0] == "| target | goal | measured | result |"
    cells = [line.strip("|").split(" | ") for line in lines[2:]]
    assert [c[0].strip() for c in cells[:5]] == [
        "auth latency p95",
        "policy latency p95",
        "throughput",
        "cache hit rate",
        "batch efficiency",
    ]
    assert all(c[-1].strip() in ("pass", "miss") for c in cells)


def test_write_produces_report_json_and_plots(tmp_path: Path) -> None:
    r = doc()
    results, md, pngs = report.write(r, tmp_path)
    assert results.parent == tmp_path / "results"
    assert results.name == "20261205T000000Z.json"
    assert json.loads(results.read_text()) == r
    text = md.read_text()
    assert f"(results/{results.name})" in text
    for png in pngs:
        assert png.read_bytes().startswith(b"\x89PNG")
        assert f"]({png.name})" in text
    for sc in r["scenarios"].values():
        assert f"`{sc['saturation']['command']}`" in text
    assert "load average at start 3.00, 4.00, 5.00" in text


def test_report_sections_for_the_new_rows() -> None:
    from meshauth.bench import report

    r = doc()
    r["scenarios"]["authz_cold"]["paced"][1]["statuses"] = {"200": 23_000, "503": 1000}
    r["scenarios"]["authz_cold"]["paced"][1]["socket_errors"] = {"connect": 0, "read": 2, "write": 0, "timeout": 0}
    text = report.render(r, "x.json")
    # the error breakdown by status, and the socket errors that happened
    assert "200: 23,000, 503: 1,000, read: 2" in text
    # p95 spread over the repeats
    assert "| 2.25–3.00 |" in text
    # the hit rate per window: warm-up (cold start), each rate, closed loop
    assert "| warm-up (cold start) | 1,000 | 400 | 0 | 40.0% |" in text
    assert "| 3,000 req/s | 1,000 | 850 | 20 | 87.0% |" in text
    assert "| 3,000 | on | 2,970 |" in text and "Events stored by the audit worker over the whole run: 250,000." in text
    assert "python -m meshauth.bench.batch_path" in text
    assert "python -m meshauth.bench.hold" in text
