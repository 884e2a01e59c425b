"""``meshauth worker audit|analytics`` serve their counters and the stream's backlog on ``/metrics``
(real processes, real Valkey and SQLite), and a busy metrics port does not stop the work."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from meshauth.bus.events import audit
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT
from meshauth.db import create_engine
from meshauth.db.tables import audit_log
from tests.bus.helpers import until
from tests.cli.conftest import clean_env
from tests.served import free_port


def _start(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "meshauth", *args], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


async def _publish(url: str, tmp_path: Path, n: int) -> None:
    p = Producer(url, ProducerConfig(spool_dir=tmp_path / "spool", gauge_interval=0))
    await p.start()
    for i in range(n):
        p.publish(AUDIT, audit("gate.decision", subject=f"svc{i}", decision="allow", status=200, action="http"))
    await p.flushed()
    await p.stop()


def _samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scraped(port: int, name: str, want: float, **labels: str) -> None:
    key = (name, frozenset(labels.items()))

    async def seen() -> bool:
        try:
            return (await asyncio.to_thread(_samples, port)).get(key) == want
        except OSError:
            return False  # not listening yet

    await until(seen, within=60, what=f"{name}{labels} == {want} on :{port}/metrics")


async def test_workers_serve_handled_and_lag_on_their_ports(
    valkey_url: str, redis: Redis, sqlite_url: str, tmp_path: Path
) -> None:
    """(``redis``: the fixture empties this run's Valkey, so only this test's events are counted.)"""
    audit_port, analytics_port = free_port(), free_port()
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_DATABASE_URL=sqlite_url, MESHAUTH_BUS_BLOCK="0.1")
    workers = [
        _start(tmp_path, env, "worker", "audit", "--metrics-port", str(audit_port)),
        # The port from the setting, not the option.
        _start(tmp_path, {**env, "MESHAUTH_ANALYTICS_WORKER_METRICS_PORT": str(analytics_port)}, "worker", "analytics"),
    ]
    try:
        await _publish(valkey_url, tmp_path, 300)
        await _scraped(audit_port, "meshauth_bus_handled_total", 300, stream=AUDIT, group="audit")
        await _scraped(analytics_port, "meshauth_bus_handled_total", 300, stream=AUDIT, group="analytics")
        # The backlog, as Redis tells it, read by the worker itself: nothing behind for either group.
        await _scraped(audit_port, "meshauth_bus_stream_lag", 0, stream=AUDIT, group="audit")
        await _scraped(analytics_port, "meshauth_bus_pending", 0, stream=AUDIT, group="analytics")
        assert all(w.poll() is None for w in workers)
    finally:
        errors = [_stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors


async def test_a_busy_metrics_port_is_logged_and_the_worker_goes_on(
    valkey_url: str, redis: Redis, sqlite_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_DATABASE_URL=sqlite_url, MESHAUTH_BUS_BLOCK="0.1")
        proc = _start(tmp_path, env, "worker", "audit", "--metrics-port", str(port))
        engine = create_engine(sqlite_url)
        try:
            await _publish(valkey_url, tmp_path, 50)

            async def stored() -> bool:
                assert proc.poll() is None, "the worker exited"
                async with engine.connect() as conn:
                    count = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
                return bool(count == 50)

            await until(stored, within=60, what="50 rows in audit_log")
        finally:
            err = _stop(proc)
            await engine.dispose()
    assert proc.returncode == 0, err
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in err


def test_a_metrics_port_out_of_range_is_refused(tmp_path: Path) -> None:
    env = clean_env(MESHAUTH_REDIS_URL="redis://127.0.0.1:1")
    result = subprocess.run(
        [sys.executable, "-m", "meshauth", "worker", "audit", "--metrics-port", "70000", "--no-migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--metrics-port" in result.stderr
