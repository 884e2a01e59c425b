"""The token-endpoint benchmark: its requests file, reading /metrics, the report; and (marked ``bench``,
under the benchmark lock: ``pytest -m bench tests/bench/test_token_lookups.py``) a small real run."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from meshauth.bench import token_lookups as bench
from meshauth.bench.token_lookups_report import report


def test_requests_alternate_grants_over_every_account(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    bench.write_requests(path, users=6, clients=4)
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    users, clients = set(), set()
    for n, line in enumerate(lines):
        auth, form = line.split("\t")
        client, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().split(":")
        assert secret == f"secret-{client}"
        clients.add(client)
        fields = dict(urllib.parse.parse_qsl(form))
        assert fields["grant_type"] == ("password" if n % 2 == 0 else "client_credentials")
        if n % 2 == 0:
            assert fields["password"] == f"pw-{fields['username']}"
            users.add(fields["username"])
    assert users == {f"user{n}" for n in range(6)}
    assert clients == {f"client{n}" for n in range(4)}


def test_parse_metrics_reads_only_its_counters() -> None:
    text = "\n".join(
        [
            "# HELP meshauth_db_statements_total SQL statements",
            'meshauth_db_statements_total{verb="select"} 12.0',
            'meshauth_db_statements_total{verb="insert"} 3.0',
            'meshauth_tokens_issued_total{grant="password"} 4.0',
            "meshauth_db_pool_checkouts_total 9.0",
            'meshauth_auth_lookup_batch_size_sum{kind="user"} 8.0',
            'meshauth_auth_lookup_batch_size_bucket{kind="user",le="1.0"} 1.0',
            'meshauth_other_total{verb="select"} 99.0',
        ]
    )
    assert bench.parse_metrics(text) == {
        'meshauth_db_statements_total{verb="select"}': 12.0,
        'meshauth_db_statements_total{verb="insert"}': 3.0,
        'meshauth_tokens_issued_total{grant="password"}': 4.0,
        "meshauth_db_pool_checkouts_total": 9.0,
        'meshauth_auth_lookup_batch_size_sum{kind="user"}': 8.0,
    }


def _one(rps: float, p95: float, sql: float) -> dict[str, Any]:
    return {
        "requests_per_s": rps,
        "p50_ms": 1.0,
        "p95_ms": p95,
        "p99_ms": 9.0,
        "sql_per_token": sql,
        "statements_per_token": {"select": sql - 0.5, "insert": 0.5},
        "checkouts_per_token": sql,
        "lookups_per_query": 2.0,
        "cpu_us_per_request": 500.0,
        "non_2xx": 0,
        "errors": 0,
        "load": 2.0,
        "command": "wrk token",
    }


def test_report_gives_every_round_ratio_and_worse_count() -> None:
    r: dict[str, Any] = {"rounds": 2, "seconds": 5, "connections": 32, "users": 10, "clients": 2, "argon2_kib": 64}
    r["sqlite"] = {"off": [_one(400, 10, 2.0), _one(500, 10, 2.0)], "on": [_one(480, 12, 1.5), _one(500, 9, 1.5)]}
    text = report(r)
    assert text.count("\n| ") == 3  # header + two rounds
    assert "paced" not in text and "(medians 10.00 → 10.50 ms)" in text
    assert "| 1.20× |" in text and "| 1.00× |" in text
    assert "p95 worse with the loader in 1 of 2 rounds" in text
    assert "off insert 0.50, select 1.50, on insert 0.50, select 1.00" in text
    assert "postgresql" not in text and "wrk token" in text


def test_report_adds_the_paced_phase_when_a_rate_was_set() -> None:
    r: dict[str, Any] = {"rounds": 1, "seconds": 5, "connections": 32, "users": 10, "clients": 2, "argon2_kib": 64}
    r["rate"] = 200
    one = {"off": [_one(400, 10, 2.0)], "on": [_one(480, 12, 1.5)]}
    r["postgresql"] = {**one, "off_paced": [_one(200, 3, 2.0)], "on_paced": [_one(199, 2, 1.0)]}
    text = report(r)
    assert "**postgresql, closed loop, wrk c=32**" in text
    assert "**postgresql, paced at ~200 req/s over 16 connections**" in text
    assert "p95 worse with the loader in 0 of 1 rounds (medians 3.00 → 2.00 ms)" in text


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_both_settings_issue_tokens_and_the_loader_makes_fewer_lookups() -> None:
    """The real run, small (SQLite only): both servers answer every grant, statements are counted in
    the served process, and the loader-off server reads one client row per token (plus a user row per
    password grant) where the loader-on server never reads more."""
    r = bench.run(rounds=1, seconds=2, connections=16, rate=50, users=40, clients=8, argon2_kib=64, postgres_url=None)
    (off,), (on,) = r["sqlite"]["off"], r["sqlite"]["on"]
    for one in (off, on, *r["sqlite"]["off_paced"], *r["sqlite"]["on_paced"]):
        assert one["tokens"] > 0 and one["non_2xx"] == 0
        assert 0.4 <= one["statements_per_token"]["insert"] <= 0.6  # the password grants' refresh tokens
    assert 1.4 <= off["statements_per_token"]["select"] <= 1.6
    assert on["statements_per_token"]["select"] <= off["statements_per_token"]["select"]
    assert on["lookups_per_query"] >= 1.0 and off["lookups_per_query"] is None
