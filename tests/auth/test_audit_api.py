"""Audit events from the auth service, stored by the audit worker and read through GET /admin/audit
(and the analytics worker's rows through GET /admin/analytics), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from meshauth.analytics.store import AnalyticsWriter
from meshauth.audit.store import AuditWriter
from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.db.tables import audit_log
from tests.auth.conftest import PASSWORD, SECRET, Harness, basic
from tests.bus.helpers import entries, until

FAST = ConsumerConfig(block=0.05, min_idle=0.5, lease_ttl=1.0, retry_delay=0.01)


@pytest.fixture
async def workers(auth: Harness) -> AsyncIterator[tuple[AuditWriter, AnalyticsWriter]]:
    engine = auth.app.service.engine
    url = auth.app.service.redis_url
    writer, analytics = AuditWriter(engine), AnalyticsWriter(engine)
    consumers = [Consumer(url, AUDIT, "audit", writer, FAST), Consumer(url, AUDIT, "analytics", analytics, FAST)]
    for c in consumers:
        c.start()
    yield writer, analytics
    for c in consumers:
        await c.stop()
    await writer.close()


async def _stored(auth: Harness, writer: AuditWriter, n: int) -> None:
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    await until(lambda: writer.stored >= n, what=f"{n} events stored")


async def _audit(auth: Harness, query: str = "") -> dict[str, Any]:
    r = await auth.http.get(f"/admin/audit{query}", headers=auth.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_gate_token_login_and_admin_events_are_queryable(
    auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter]
) -> None:
    writer, _ = workers
    await auth.add_client()  # admin.action
    await auth.add_user()  # admin.action
    token = (await auth.token())["access_token"]  # token.issued (client)
    assert (await auth.gate(token)).status_code == 200  # gate.decision allow
    assert (await auth.gate("not-a-token")).status_code == 401  # gate.decision deny
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": "wrong"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400  # login.failed
    pw = await auth.token(grant_type="password", username="alice", password=PASSWORD)  # login.succeeded, issued
    await auth.token(grant_type="refresh_token", refresh_token=pw["refresh_token"])  # token.refreshed
    r = await auth.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
    assert r.status_code == 200  # token.revoked
    await _stored(auth, writer, 10)

    body = await _audit(auth)
    assert body["next_cursor"] is None
    events = body["events"]
    times = [e["time"] for e in events]
    assert times == sorted(times, reverse=True)  # newest first
    types = [e["type"] for e in events]
    for expected in (
        "admin.action", "token.issued", "gate.decision", "login.failed", "login.succeeded",
        "token.refreshed", "token.revoked",
    ):  # fmt: skip
        assert expected in types
    allow = (await _audit(auth, "?type=gate.decision&decision=allow"))["events"]
    assert [(e["subject"], e["subject_type"], e["decision"]) for e in allow] == [("svc", "client", "allow")]
    assert allow[0]["resource"] == "/ext_authz/orders/42"
    assert allow[0]["time"].endswith("Z")
    deny = (await _audit(auth, "?type=gate.decision&decision=deny"))["events"]
    assert len(deny) == 1 and deny[0]["subject"] == "" and deny[0]["status"] == 401
    failed = (await _audit(auth, "?type=login.failed&subject=alice"))["events"]
    assert [(e["subject"], e["decision"]) for e in failed] == [("alice", "deny")]
    revoked = (await _audit(auth, "?type=token.revoked"))["events"]
    assert revoked[0]["subject"] == "svc"


async def test_a_sign_in_refused_for_a_username_that_is_the_client_id_is_audited(
    auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter]
) -> None:
    """Refused before the password is looked at, and still a failed login in the audit log."""
    writer, _ = workers
    await auth.add_client()  # admin.action
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "svc", "password": PASSWORD},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    await _stored(auth, writer, 2)
    failed = (await _audit(auth, "?type=login.failed"))["events"]
    assert [(e["subject"], e["client_id"], e["decision"], e["reason"]) for e in failed] == [
        ("svc", "svc", "deny", "username_is_client_id")
    ]


async def test_pages_follow_the_cursor_newest_first(
    auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter]
) -> None:
    writer, _ = workers
    await auth.add_client()
    token = (await auth.token())["access_token"]
    for _ in range(25):
        await auth.gate(token)
    await _stored(auth, writer, 27)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        body = await _audit(auth, f"?type=gate.decision&limit=10{cursor}")
        seen.extend(e["id"] for e in body["events"])
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    everything = [e["id"] for e in (await _audit(auth, "?type=gate.decision&limit=1000"))["events"]]
    assert seen == everything


async def test_since_and_until_bound_the_window(auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter]) -> None:
    writer, _ = workers
    await auth.add_client()
    await _stored(auth, writer, 1)
    assert len((await _audit(auth, "?since=2000-01-01T00:00:00Z"))["events"]) == 1
    assert (await _audit(auth, "?until=2000-01-01T00:00:00%2B02:00"))["events"] == []
    assert (await _audit(auth, "?since=2999-01-01T00:00:00.123456789Z"))["events"] == []


def _raw_cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _forged_cursor(time_text: str) -> str:
    return base64.urlsafe_b64encode(f"{time_text}:x".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?since=yesterday", "since"),
        ("?since=2026-12-04T10:00:00", "since"),  # no offset
        ("?until=2026-13-45T10:00:00Z", "until"),
        ("?type=nope", "type"),
        ("?decision=maybe", "decision"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=-5", "limit"),
        ("?limit=99999999999999999999999", "limit"),
        ("?cursor=%%%", "cursor"),
        ("?cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("?limit=%C2%B2", "limit"),  # "²": str.isdigit() says yes, int() raises (was a 500)
        ("?limit=%D9%A3", "limit"),  # Arabic-Indic 3: not a decimal the docs promise
        ("?cursor=" + _forged_cursor("9" * 60), "cursor"),  # past 64 bits (was a 500: driver overflow)
        ("?cursor=" + _forged_cursor("\u0661\u0662"), "cursor"),  # Arabic-Indic digits
        ("?cursor=" + _raw_cursor("123:a\x00b"), "cursor"),  # NUL: PostgreSQL refuses it (was a 503)
        ("?since=2026-12-04T10:00:00Z&since=2026-12-05T10:00:00Z", "since"),
        ("?subject=" + "x" * 300, "subject"),
        ("?store=" + "s" * 65, "store"),
        ("?action=", "action"),
        ("?subject=a%00b", "subject"),
        ("?subject=%ff%fe", "subject"),
        ("?color=red", "color"),
        ("?type=token.issued&type=token.revoked", "type"),
        ("?" + "a=" + "b" * 5000, "query"),
    ],
)
async def test_every_filter_is_validated(auth: Harness, query: str, field: str) -> None:
    """A bad filter: 400 invalid_request naming the field, never a 500 or a driver error."""
    r = await auth.http.get(f"/admin/audit{query}", headers=auth.admin)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert body["field"] == field
    assert repr(field) in body["error_description"]


async def test_audit_and_analytics_need_the_admin_token(auth: Harness) -> None:
    for path in ("/admin/audit", "/admin/analytics"):
        assert (await auth.http.get(path)).status_code == 401
        assert (await auth.http.get(path, headers={"authorization": "Bearer wrong"})).status_code == 401


async def test_analytics_counts_decisions_per_minute(
    auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter]
) -> None:
    _, analytics = workers
    await auth.add_client()
    token = (await auth.token())["access_token"]
    for _ in range(8):
        await auth.gate(token)
    for _ in range(2):
        await auth.gate("bogus")
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    await until(lambda: analytics.counted >= 10, what="decisions counted")
    r = await auth.http.get("/admin/analytics?action=http", headers=auth.admin)
    assert r.status_code == 200, r.text
    rows = r.json()["minutes"]
    assert sum(m["requests"] for m in rows) == 10
    assert sum(m["allows"] for m in rows) == 8
    assert sum(m["denies"] for m in rows) == 2
    assert all(m["store"] == "" and m["p95_latency_ms"] is not None for m in rows)
    bad = await auth.http.get("/admin/analytics?since=soon", headers=auth.admin)
    assert bad.status_code == 400 and bad.json()["field"] == "since"


async def test_an_event_timed_past_what_a_date_can_say_is_dead_lettered_not_a_500_for_every_reader(
    auth: Harness, workers: tuple[AuditWriter, AnalyticsWriter], redis: Redis
) -> None:
    """A stream entry timed in the year 33658 (or before year 1) fitted audit_log's BIGINT and was
    stored; newest first, it headed every unfiltered page, and GET /admin/audit (and, through its
    analytics row, GET /admin/analytics) answered 500 for good (the row's time has no RFC 3339 form).
    NaN and infinity were only dead-lettered after every attempt. The schema bounds ``time``."""
    writer, _ = workers
    await auth.add_client()
    await _stored(auth, writer, 1)
    names = StreamNames("meshauth:", AUDIT, 4)
    for when in (1e12, -1e12, float("nan"), float("inf")):
        event = msgspec.msgpack.encode(
            {"id": f"far{when}", "time": when, "type": "gate.decision", "decision": "allow", "subject": "s"}
        )
        await redis.xadd(names.of_key("s"), {"d": event})
    await until(lambda: _dead_letters(redis, names.dead, 8), what="8 dead letters (4 events, 2 groups)")
    assert (await _audit(auth))["events"]
    r = await auth.http.get("/admin/analytics?since=2000-01-01T00:00:00Z", headers=auth.admin)
    assert r.status_code == 200, r.text
    dead = [fields for _, fields in await entries(redis, names.dead)]
    assert all(f[b"attempts"] == b"0" and b"time" in f[b"error"] for f in dead)


async def _dead_letters(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.xlen(key)) >= n


async def test_a_row_stored_with_a_time_no_date_can_say_is_listed_not_a_500(auth: Harness) -> None:
    """Rows a release before stop 25 stored with a time past year 9999 (the bus now refuses such
    events) headed every unfiltered page and made it a 500 for good. Listed, its time ``null``."""
    row = {"id": "far", "time_us": 2**62, "type": "gate.decision", "subject": "x", "subject_type": "user",
           "decision": "allow", "action": "http", "store": "", "resource": "/r", "client_id": "c",
           "status": 200, "reason": "", "latency_us": 0}  # fmt: skip
    async with auth.app.service.engine.begin() as conn:
        await conn.execute(sa.insert(audit_log), [row])
    page = await _audit(auth)
    assert [(e["id"], e["time"]) for e in page["events"]][:1] == [("far", None)]
