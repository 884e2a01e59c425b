"""The auth service's audit hooks: one event per site, never in the request's way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from redis.asyncio import Redis

from meshauth.auth import audit_hooks
from meshauth.auth.metrics import GATE_DECISIONS
from meshauth.bus import events
from meshauth.bus.events import AuditEvent
from meshauth.bus.producer import EventTooLarge
from meshauth.bus.streams import AUDIT, StreamNames
from tests.auth.conftest import Harness, make_settings, start_harness
from tests.auth.test_extauthz import check_request, grpc_auth
from tests.bus.helpers import read_all, until

__all__ = ["grpc_auth"]  # the fixture, used here


async def _events(redis: Redis) -> list[Any]:
    return [event for _, _, event in await read_all(redis, StreamNames("meshauth:", AUDIT, 4).all())]


async def test_each_gate_decision_is_one_event(auth: Harness, redis: Redis) -> None:
    await auth.add_client()
    token = (await auth.token())["access_token"]
    for _ in range(3):
        assert (await auth.gate(token)).status_code == 200
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    gate = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert len(gate) == 3
    assert {(e.subject, e.client_id, e.decision, e.action) for e in gate} == {("svc", "svc", "allow", "http")}


async def test_a_huge_path_is_cut_not_refused(auth: Harness, redis: Redis) -> None:
    """The path is the caller's: cut to a size that keeps the event under the bus's limit."""
    r = await auth.http.get("/ext_authz/" + "p" * 60_000)
    assert r.status_code == 401
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    (event,) = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert len(event.resource) == 1024


async def test_auditing_off_publishes_nothing(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path, audit_enabled=False)):
        assert h.app.service.bus is None
        await h.add_client()
        token = (await h.token())["access_token"]
        assert (await h.gate(token)).status_code == 200
    assert await _events(redis) == []


async def test_bus_full_drops_events_never_requests(
    sqlite_url: str, valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Redis gone, a tiny buffer and spool: the gate answers every request; the drops are counted."""
    server = valkey_server_factory()
    url = server.connection_url
    settings = make_settings(sqlite_url, url, tmp_path, bus_buffer_events=5, bus_spool_max_bytes=1)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token())["access_token"]
        assert (await h.gate(token)).status_code == 200
        server.stop()
        for _ in range(200):
            assert (await h.gate(token)).status_code == 200
        producer = h.app.service.bus
        assert producer is not None
        await until(lambda: producer.dropped > 0, what="drops counted")  # noqa: B023 - awaited here
        metrics = (await h.http.get("/metrics")).text
        assert 'meshauth_bus_dropped_total{reason="buffer_full",stream="audit"}' in metrics


def _grpc_decisions() -> int:
    return sum(n for labels, n in GATE_DECISIONS.counts.items() if labels[0] == "grpc")


async def test_grpc_checks_are_audited(grpc_auth: tuple[Harness, str], redis: Redis) -> None:
    """Through the real gRPC server: one event per check, the verdict's identity and status."""
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        assert (await stub.Check(check_request({"authorization": f"Bearer {token}"}))).status.code == code_pb2.OK
        denied = await stub.Check(check_request({"authorization": "Bearer nope"}))
        assert denied.denied_response.status.code == 401
    bus = h.app.service.bus
    assert bus is not None
    await until(lambda: bus.buffered == 0 and bus.published >= 2, what="both events flushed")
    gate = sorted((e for e in await _events(redis) if e.type == "gate.decision"), key=lambda e: e.status)
    assert [(e.action, e.decision, e.status, e.subject, e.resource) for e in gate] == [
        ("grpc", "allow", 200, "svc", "/orders/1"),
        ("grpc", "deny", 401, "", "/orders/1"),
    ]


async def test_grpc_checks_decided_for_a_client_gone_are_audited(grpc_auth: tuple[Harness, str], redis: Redis) -> None:
    """200 checks in flight when the client closes its channel (after the first answer): every check
    the gate decided — counted in ``meshauth_gate_decisions_total`` — is audited, answer delivered or
    not; the gate keeps answering afterwards."""
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    request = check_request({"authorization": f"Bearer {token}"})
    before = _grpc_decisions()
    channel = grpc.aio.insecure_channel(target)
    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
    calls = [asyncio.ensure_future(stub.Check(request)) for _ in range(200)]
    await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    await channel.close()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    answered = sum(1 for o in outcomes if isinstance(o, external_auth_pb2.CheckResponse))
    assert answered >= 1
    bus = h.app.service.bus
    assert bus is not None
    # The server may still be deciding checks whose client is gone (a loaded machine: a third decision
    # after the client's gather returned), so the count is read afresh with each look at the events.
    gate: list[Any] = []
    decided = 0

    async def every_decided_check_audited() -> bool:
        nonlocal gate, decided
        await bus.flushed()
        decided = _grpc_decisions() - before
        gate = [e for e in await _events(redis) if e.type == "gate.decision"]
        return len(gate) == decided

    await until(every_decided_check_audited, what="an event per decided check")
    assert decided >= answered
    assert all(e.action == "grpc" and e.decision == "allow" for e in gate)
    async with grpc.aio.insecure_channel(target) as again:
        response = await external_auth_pb2_grpc.AuthorizationStub(again).Check(request)
    assert response.status.code == code_pb2.OK


async def test_gate_events_from_remembered_templates_are_each_their_own(
    auth: Harness, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's events are stamped from a template per question: each has its own id and time, and
    with the templates' memory at its bound (3 here) distinct paths still give each its own path, in
    publish order per key."""
    monkeypatch.setattr(audit_hooks, "MAX_TEMPLATES", 3)
    await auth.add_client()
    token = (await auth.token())["access_token"]
    paths = [f"/orders/{i % 7}" for i in range(40)]
    for path in paths:
        assert (
            await auth.http.get("/ext_authz" + path, headers={"authorization": f"Bearer {token}"})
        ).status_code == 200
        assert (await auth.http.get("/ext_authz" + path)).status_code == 401
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    gate = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert len({e.id for e in gate}) == len(gate) == 80
    allowed = [e for e in gate if e.decision == "allow"]
    denied = [e for e in gate if e.decision == "deny"]
    assert [e.resource for e in allowed] == [e.resource for e in denied] == ["/ext_authz" + p for p in paths]
    assert {(e.subject, e.client_id, e.subject_type, e.status, e.action) for e in allowed} == {
        ("svc", "svc", "client", 200, "http")
    }
    assert {(e.subject, e.subject_type, e.status) for e in denied} == {("", "unknown", 401)}
    for one_key in (allowed, denied):  # each key's events in publish order, with their own times
        times = [e.time for e in one_key]
        assert times == sorted(times)


async def test_a_gate_event_over_the_size_limit_is_refused_counted_never_raised(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    settings = make_settings(sqlite_url, valkey_url, tmp_path, bus_max_event_bytes=256)
    async for h in start_harness(settings):
        # The counter is the process's: other tests in this process may have counted refusals before.
        before = _oversized((await h.http.get("/metrics")).text)
        for _ in range(3):
            assert (await h.http.get("/ext_authz/" + "p" * 400)).status_code == 401
        assert (await h.http.get("/ext_authz/short")).status_code == 401
        bus = h.app.service.bus
        assert bus is not None
        await bus.flushed()
        assert _oversized((await h.http.get("/metrics")).text) == before + 3  # each refused
    gate = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert [e.resource for e in gate] == ["/ext_authz/short"]


def _oversized(metrics: str) -> float:
    """The audit stream's count of events refused as oversized, 0 before the first."""
    prefix = 'meshauth_bus_dropped_total{reason="oversized",stream="audit"} '
    return sum(float(line.removeprefix(prefix)) for line in metrics.splitlines() if line.startswith(prefix))


class _Captured:
    """A producer stand-in for the hook's own logic: what it publishes, decoded."""

    class config:
        max_event_bytes = 16_384

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def partition(self, stream: str, key: str) -> str:
        return f"{stream}:{len(key) % 4}"

    def check_size(self, stream: str, type_: str, size: int) -> None:
        if size > self.config.max_event_bytes:
            raise EventTooLarge(f"{size}")

    def publish_to(self, partition: str, data: bytes) -> bool:
        self.events.append((partition, events.decode(data)))
        return True

    def publish(self, stream: str, event: Any) -> None:
        self.events.append(("plain", event))


def _fields(e: Any) -> tuple[Any, ...]:
    return (e.type, e.subject, e.subject_type, e.client_id, e.decision, e.action, e.resource, e.status, e.reason)


def test_spliced_gate_events_are_the_events_built_whole() -> None:
    """The path spliced into a family's template gives, byte for byte in decoding, the event built
    whole — for paths of every shape (empty, non-ASCII, long enough to be cut), verdicts and reasons;
    each with its own id."""
    producer = _Captured()
    hook = audit_hooks.AuthAudit(producer)  # type: ignore[arg-type]
    paths = ["", "/a", "/ü/€/😀", "/x" * 700, "/" + "p" * 5000, "/a"]
    cases = [(200, (("x-meshauth-subject", "svc"), ("x-meshauth-client-id", "svc")), "", None),
             (403, (), "policy_denied", ("alice", "web")), (401, (), "missing_credential", None)]  # fmt: skip
    for status, headers, why, identity in cases:
        for path in paths:
            hook.gate(status, headers, why, "http", path, identity)
    assert len(producer.events) == len(cases) * len(paths)
    assert len({e.id for _, e in producer.events}) == len(producer.events)
    n = 0
    for status, headers, why, identity in cases:
        subject, client = (headers[0][1], headers[1][1]) if status == 200 else identity or ("", "")
        for path in paths:
            partition, got = producer.events[n]
            n += 1
            whole = AuditEvent(id="", time=0.0, type="gate.decision", subject=subject,
                               subject_type=audit_hooks._kind(subject, client), client_id=client,
                               decision="allow" if status == 200 else "deny", action="http",
                               resource=path[: audit_hooks.MAX_TEXT], status=status, reason=why)  # fmt: skip
            assert _fields(got) == _fields(whole)
            # An empty path is a field msgspec leaves out: that event is built whole ("plain").
            assert partition == ("plain" if path == "" else producer.partition(AUDIT, subject))
    assert len(hook._templates) == len(cases)  # one family per verdict and identity, not per path


def test_a_family_whose_split_is_not_proved_is_sent_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the path's place cannot be told from the template (the marker found more than once —
    which no string value can forge, as the marker's header is not UTF-8: forced here), each event is
    built and sent whole, with the right path, and nothing is remembered for its family."""
    monkeypatch.setattr(audit_hooks, "_MARKED", b"\xa4")  # "http", "type", "deny": found many times
    producer = _Captured()
    hook = audit_hooks.AuthAudit(producer)  # type: ignore[arg-type]
    for path in ("/one", "/two"):
        hook.gate(403, (), "policy_denied", "http", path, ("alice", "c"))
    assert [(p, e.resource, e.subject) for p, e in producer.events] == [
        ("plain", "/one", "alice"),
        ("plain", "/two", "alice"),
    ]
    assert hook._templates == {}


def test_a_spliced_event_over_the_size_limit_is_refused() -> None:
    """The size is checked per event (the path varies): a long path refused, a short one of the same
    family sent."""
    producer = _Captured()
    producer.config.max_event_bytes = 400
    hook = audit_hooks.AuthAudit(producer)  # type: ignore[arg-type]
    try:
        hook.gate(401, (), "missing_credential", "http", "/short", None)
        hook.gate(401, (), "missing_credential", "http", "/" + "p" * 600, None)
        hook.gate(401, (), "missing_credential", "http", "/short2", None)
    finally:
        producer.config.max_event_bytes = 16_384
    assert [e.resource for _, e in producer.events] == ["/short", "/short2"]
