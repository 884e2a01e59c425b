"""``meshauth worker``, ``meshauth bus status`` and ``meshauth audit tail`` as real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from redis.asyncio import Redis

from meshauth.bus.events import audit, batches, encode
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.db import create_engine
from meshauth.db.tables import audit_log
from tests.bus.helpers import until
from tests.cli.conftest import clean_env, meshauth
from tests.served import free_port


def _start(cwd: Path, env: dict[str, str], *args: str, stdout: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "meshauth", *args], cwd=cwd, env=env, stdout=stdout, text=True)


async def _publish(url: str, tmp_path: Path, n: int, **fields: object) -> list[str]:
    p = Producer(url, ProducerConfig(spool_dir=tmp_path / "spool"))
    await p.start()
    events = [audit("token.issued", subject=f"svc{i}", **fields) for i in range(n)]
    for e in events:
        p.publish(AUDIT, e)
    await p.flushed()
    await p.stop()
    return [e.id for e in events]


async def test_worker_audit_stores_events_and_stops_on_sigterm(
    valkey_url: str, redis: Redis, sqlite_url: str, tmp_path: Path
) -> None:
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_DATABASE_URL=sqlite_url, MESHAUTH_BUS_BLOCK="0.1")
    proc = _start(tmp_path, env, "worker", "audit")
    engine = create_engine(sqlite_url)
    try:
        ids = await _publish(valkey_url, tmp_path, 500)

        async def stored() -> bool:
            assert proc.poll() is None, "the worker exited"
            async with engine.connect() as conn:
                return bool((await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one() == 500)

        await until(stored, within=60, what="500 rows in audit_log")
        async with engine.connect() as conn:
            assert sorted(r[0] for r in await conn.execute(sa.select(audit_log.c.id))) == sorted(ids)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        # It gave its leases back: a successor need not wait for them to expire.
        assert await redis.keys("meshauth:bus:lease:audit:audit:*") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await engine.dispose()


async def test_bus_status_finds_the_stacks_valkey_and_shows_every_stream(
    valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Run where `meshauth up` wrote var/redis-url: no REDIS_URL needed."""
    await _publish(valkey_url, tmp_path, 20)
    names = StreamNames("meshauth:", AUDIT, 4)
    written = sum([await redis.xlen(s) for s in names.all()])  # entries: a batch per partition per flush
    await redis.xadd(names.dead, {"error": "boom"})
    await redis.xreadgroup("audit", "c1", {names.partition(0): ">"}, count=1)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "redis-url").write_text(valkey_url + "\n")
    result = await asyncio.to_thread(meshauth, tmp_path, "bus", "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"stream audit: 4 partitions, {written} entries held" in out
    assert f"group analytics: lag {written}, pending 0" in out
    assert f"group audit: lag {written - 1}, pending 1" in out
    assert "consumer c1: pending 1" in out
    assert "dead letters: 1" in out


def test_bus_status_without_redis_says_how_to_get_one(tmp_path: Path) -> None:
    result = meshauth(tmp_path, "bus", "status")
    assert result.returncode == 1
    assert "no Redis" in result.stderr


async def test_audit_tail_follows_new_events(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url)
    proc = _start(tmp_path, env, "audit", "tail", "--count", "3", "--decision", "allow", stdout=subprocess.PIPE)
    try:
        # Published until the tail (which starts at "now") has seen three: it may start after the first.
        async def shown() -> bool:
            await _publish(valkey_url, tmp_path, 2, decision="allow")
            await _publish(valkey_url, tmp_path, 2, decision="deny")
            return proc.poll() is not None

        await until(shown, within=60, what="the tail printed three events and stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 0
    assert len(lines) == 3
    assert all(e["decision"] == "allow" and e["type"] == "token.issued" for e in lines)
    assert all(e["time"].endswith("Z") for e in lines)


async def test_audit_tail_does_not_show_a_replayed_dead_letter_again(
    valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    names = StreamNames("meshauth:", AUDIT, 4)
    replayed = batches([encode(audit("token.issued", subject="replayed", decision="allow"))])[0]
    env = clean_env(MESHAUTH_REDIS_URL=valkey_url)
    proc = _start(tmp_path, env, "audit", "tail", "--count", "2", "--decision", "allow", stdout=subprocess.PIPE)
    try:

        async def shown() -> bool:
            # What `bus dead-letters replay` writes (an entry for one group), then a new event.
            await redis.xadd(names.all()[0], {"d": replayed, "g": "audit"})
            await _publish(valkey_url, tmp_path, 1, decision="allow")
            return proc.poll() is not None

        await until(shown, within=60, what="the tail printed two events and stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=10)
    subjects = [json.loads(line)["subject"] for line in out.splitlines()]
    assert proc.returncode == 0
    assert len(subjects) == 2 and "replayed" not in subjects, subjects


def test_bus_status_does_not_print_the_redis_password(tmp_path: Path) -> None:
    """Redis unreachable: the line names the URL with its password masked."""
    port = free_port()  # nothing listens there
    result = meshauth(tmp_path, "bus", "status", REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
    assert result.returncode == 1, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert f"redis://:***@127.0.0.1:{port}/0" in result.stderr
