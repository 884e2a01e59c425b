"""PolicyClient against a real policy server (granian subprocess) and a real Valkey."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from meshauth.client import (
    REASON_UNAVAILABLE,
    AiohttpTransport,
    BreakerConfig,
    Check,
    PolicyClient,
)
from tests.client.served import DECISION_TOKEN, Recording, policy_server, post, push

POLICIES = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("edit-own") permit(principal, action == Action::"edit", resource) when { resource.owner == principal.id };
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICIES)
        yield url


def questions() -> list[Check]:
    out = []
    for sid in ("alice", "bob", "mallory"):
        for action in ("view", "edit", "delete"):
            out.append(
                Check(
                    {"type": "User", "id": sid},
                    action,
                    {"type": "Doc", "id": "d", "properties": {"owner": "bob"}},
                )
            )
    return out


async def test_decisions_equal_the_services(server: str) -> None:
    """Every decision (allow/deny, determining policies, revision) is the one the service gives directly."""
    async with PolicyClient([server], token=DECISION_TOKEN, timeout=5) as client:
        got = await client.check_many(questions())
    for q, d in zip(questions(), got, strict=True):
        body = {"subject": q.subject, "action": {"name": q.action}, "resource": q.resource}
        status, direct = post(server, "/access/v1/evaluation", body, DECISION_TOKEN)
        assert status == 200
        assert (d.decision, list(d.reasons), d.revision) == (
            direct["decision"],
            direct["context"]["policies"],
            direct["context"]["revision"],
        )
        assert d.error is None


async def test_concurrent_checks_reach_the_service_as_one_evaluations_call(server: str) -> None:
    """Twenty concurrent distinct checks are one evaluations call on the wire."""
    t = Recording(AiohttpTransport())
    async with PolicyClient([server], token=DECISION_TOKEN, transport=t, cache=None, timeout=5) as client:
        checks = [Check({"type": "User", "id": f"u{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(20)]
        ds = await client.check_many(checks)
    await t.aclose()  # a transport passed in belongs to the caller
    assert all(d.decision for d in ds)
    assert t.endpoints == ["evaluations"]


async def test_l2_is_shared_between_clients(server: str, redis: Redis) -> None:
    """A decision one client fetched is an L2 hit for another client (another replica) on the same Redis."""
    first_t, second_t = Recording(AiohttpTransport()), Recording(AiohttpTransport())
    ask = ({"type": "User", "id": "alice"}, "view", {"type": "Doc", "id": "d9"})
    async with PolicyClient([server], token=DECISION_TOKEN, transport=first_t, redis=redis, timeout=5) as first:
        await first.check(*ask)
    async with PolicyClient([server], token=DECISION_TOKEN, transport=second_t, redis=redis, timeout=5) as second:
        second.advance(first.state)  # type: ignore[arg-type]
        d = await second.check(*ask)
        again = await second.check(*ask)
    await first_t.aclose()
    await second_t.aclose()
    assert (d.source, d.decision, again.source) == ("l2", True, "l1")
    assert second_t.endpoints == []


async def test_l2_value_is_msgpack_not_pickle(server: str, redis: Redis) -> None:
    """What the client writes to Redis is MessagePack (a pickle would start with 0x80)."""
    async with PolicyClient([server], token=DECISION_TOKEN, redis=redis, timeout=5) as client:
        await client.check({"type": "User", "id": "carol"}, "view", {"type": "Doc", "id": "d"})
    keys = await redis.keys("meshauth:decision:*")
    assert keys
    value = await redis.get(keys[0])
    assert value is not None and value[:1] != b"\x80"


async def test_wrong_or_missing_token_denies_as_unavailable(server: str) -> None:
    """The protected decision API refuses the call; the client denies with policy_unavailable."""
    for token in (None, "not-the-right-token-at-all"):
        async with PolicyClient([server], token=token) as client:
            d = await client.check({"type": "User", "id": "alice"}, "view", {"type": "Doc", "id": "d"})
        assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)


async def test_stopped_service_opens_the_breaker_and_resumes_after_sigcont(tmp_path: Path) -> None:
    """SIGSTOP: checks deny with policy_unavailable within their deadline and the breaker opens within a
    second; open, checks fail fast; after SIGCONT the probes succeed, it closes and allows resume."""
    with policy_server(tmp_path) as (url, proc):
        push(url, POLICIES)
        cfg = BreakerConfig(window=5.0, min_calls=5, failure_rate=0.5, open_for=0.3, probes=2)
        clock = Ahead()
        async with PolicyClient(
            [url], token=DECISION_TOKEN, breaker=cfg, cache=None, timeout=0.05, clock=clock
        ) as client:
            warm = await client.check({"type": "User", "id": "warm"}, "view", {"type": "Doc", "id": "d"}, timeout=5)
            assert warm.decision
            os.killpg(proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                n = 0
                while client.breaker_state != "open":
                    t0 = time.monotonic()
                    d = await client.check({"type": "User", "id": f"u{n}"}, "view", {"type": "Doc", "id": "d"})
                    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)
                    assert time.monotonic() - t0 < 0.05 + 0.1  # the deadline, plus slack for a shared machine
                    n += 1
                    assert time.monotonic() - started < 1.0, "the breaker did not open within a second"
                t0 = time.monotonic()
                d = await client.check({"type": "User", "id": "fast"}, "view", {"type": "Doc", "id": "d"})
                assert d.error == REASON_UNAVAILABLE and time.monotonic() - t0 < 0.02
            finally:
                os.killpg(proc.pid, signal.SIGCONT)
            clock.ahead += cfg.open_for  # the open period passes (no waiting for it)
            resumed = []
            for i in range(20):
                d = await client.check({"type": "User", "id": f"v{i}"}, "view", {"type": "Doc", "id": "d"}, timeout=1)
                resumed.append(d.decision)
                if client.breaker_state == "closed":
                    break
            assert client.breaker_state == "closed" and resumed[-1]


class Ahead:
    """``time.monotonic`` moved ahead by hand: the breaker's periods pass without sleeping, while
    real time keeps flowing for the deadlines against the real server."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


HOSTILE: dict[str, bytes | None] = {
    "not-json": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\nnot json!",
    "wrong-shape": b'HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{"decision":1,"context":{}}',
    "huge": b"HTTP/1.1 200 OK\r\ncontent-length: 50000000\r\n\r\n" + b'{"decision":true,' + b" " * 100_000,
    "huge-chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    + (b"10000\r\n" + b" " * 65536 + b"\r\n") * 80,
    "short-body": b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"decision":true',
    "not-http": b"\x00\xff garbage \r\n\r\n",
    "half-close": None,
    "allow-with-error": b'HTTP/1.1 200 OK\r\ncontent-length: 102\r\n\r\n{"decision":true,"context":'
    b'{"revision":1,"policies":[],"errors":["x"],"error":{"status":400,"message":"x"}}}',
}


@pytest.mark.parametrize("mode", list(HOSTILE))
async def test_hostile_service_answers_fail_closed(mode: str) -> None:
    """Garbage, huge, truncated, non-HTTP or half-closed answers deny — no allow, no crash, in time."""
    answer = HOSTILE[mode]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                writer.write_eof()
                await asyncio.sleep(0.2)  # the hostile server holds its end open: the client must not wait for it
            else:
                writer.write(answer)
                await writer.drain()
                await asyncio.sleep(0.2)  # the same: the answer is all the client gets, the close comes late
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    port = _free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server, PolicyClient([f"http://127.0.0.1:{port}"], timeout=0.5) as client:
        t0 = time.monotonic()
        d = await client.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": "d"})
        assert d.decision is False and d.error is not None
        assert time.monotonic() - t0 < 0.6
        many = await client.check_many(
            [Check({"type": "User", "id": f"u{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(3)]
        )
        assert all(not x.decision for x in many)


def test_served_helper_is_killed(tmp_path: Path) -> None:
    """The fixture's server process is gone after the context (no stray stopped servers)."""
    with policy_server(tmp_path) as (_url, proc):
        pass
    assert proc.poll() is not None and isinstance(proc, subprocess.Popen)
