"""A real ``meshauth worker audit`` whose ``/metrics`` port is attacked while events flow: the audit
trail is its job, so every event must still be stored, and the attack must leave no error in its log."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from redis.asyncio import Redis

from meshauth.db import create_engine
from meshauth.db.tables import audit_log
from meshauth.observability.metrics_http import MAX_CONNECTIONS
from tests.bus.helpers import until
from tests.cli.conftest import clean_env
from tests.cli.test_worker import _publish, _samples, _start, _stop
from tests.served import free_port

EVENTS = 300
SCRAPE_WITHIN = 2.0  # seconds: well inside Prometheus' default scrape timeout (10 s)


def _attack(port: int, stop: threading.Event) -> None:
    """Slowloris beyond the connection cap (a byte a second), clients that reset right after their
    request, pipelined and smuggling-shaped requests, a huge head: until ``stop`` is set."""
    slow: list[socket.socket] = []
    try:
        while not stop.is_set():
            while len(slow) < MAX_CONNECTIONS * 2:
                s = socket.socket()
                s.settimeout(1)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    s.close()
                    break
                slow.append(s)
            for s in list(slow):
                try:
                    s.send(b"G")
                except OSError:  # closed by the server (cap, read timeout): replaced next round
                    slow.remove(s)
                    s.close()
            resets = []
            for _ in range(20):  # a burst: requests the server reads along with their reset
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=1)
                except OSError:
                    break
                s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                resets.append(s)
            for s in resets:
                s.close()
            for request in (
                b"GET /metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" * 20,
                b"GET /\xff\x00 HTTP/1.1\r\n" + b"x: y\r\n" * 3000 + b"\r\n",
            ):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(request)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                except OSError:
                    pass
            stop.wait(0.2)
    finally:
        for s in slow:
            s.close()


async def test_events_are_stored_while_the_metrics_port_is_attacked(
    valkey_url: str, redis: Redis, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_DATABASE_URL=sqlite_url, MESHAUTH_BUS_BLOCK="0.1")
    proc = _start(tmp_path, env, "worker", "audit", "--metrics-port", str(port))
    engine = create_engine(sqlite_url)
    stop = threading.Event()
    try:
        await until(lambda: _listening(port), within=60, what=f"the worker's /metrics on :{port}")
        attacker = asyncio.create_task(asyncio.to_thread(_attack, port, stop))
        await asyncio.sleep(1.0)
        await _publish(valkey_url, tmp_path, EVENTS)

        async def stored() -> bool:
            assert proc.poll() is None, "the worker exited"
            async with engine.connect() as conn:
                count = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
            return bool(count == EVENTS)

        await until(stored, within=60, what=f"{EVENTS} rows in audit_log during the attack")
        stop.set()
        await attacker
        # Scraped again once the attack ends (the slow connections are closed within READ_TIMEOUT).
        await until(lambda: _answers(port), within=15, what="/metrics answered after the attack")
    finally:
        stop.set()
        err = _stop(proc)
        await engine.dispose()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "request failed" not in err, err[-3000:]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _answers(port: int) -> bool:
    try:
        return ("meshauth_bus_handled_total", frozenset({("stream", "audit"), ("group", "audit")})) in _samples(port)
    except OSError:
        return False


def _hold_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (or one byte of a head, slowloris) and stay open."""
    held = []
    for n in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        if n % 2:
            s.send(b"G")
        held.append(s)
    return held


def _timed_scrape(port: int) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_WITHIN) as resp:
        assert resp.status == 200 and b"# TYPE " in resp.read()
    return time.monotonic() - started


async def test_a_scrape_answers_while_idle_connections_hold_the_cap(
    valkey_url: str, redis: Redis, sqlite_url: str, tmp_path: Path
) -> None:
    """Twice the connection cap held open by idle and slowloris clients: a scrape still answers within
    SCRAPE_WITHIN seconds, every time (before: it was closed unanswered while the cap was held)."""
    port = free_port()
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_DATABASE_URL=sqlite_url, MESHAUTH_BUS_BLOCK="0.1")
    proc = _start(tmp_path, env, "worker", "audit", "--metrics-port", str(port))
    held: list[socket.socket] = []
    try:
        await until(lambda: _listening(port), within=60, what=f"the worker's /metrics on :{port}")
        for _ in range(3):
            held += await asyncio.to_thread(_hold_idle, port, MAX_CONNECTIONS * 2)
            took = await asyncio.to_thread(_timed_scrape, port)
            assert took < SCRAPE_WITHIN, took
    finally:
        for s in held:
            s.close()
        err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "request failed" not in err, err[-3000:]
