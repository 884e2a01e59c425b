"""Message bus end to end: ``publish`` in one process → ``meshauth worker audit`` → committed
``audit_log`` rows (``meshauth bench bus``).

Two phases on a private Valkey: *sustained* — RATE events/s for SECONDS, from a publisher process;
the committed-row count is sampled every 0.25 s, and the rate over the publishing window is the
sustained throughput (it counts only rows committed while publishing); *burst* — COUNT events as fast
as the producer takes them, then the time until the audit group's lag and pending count are back to
zero. The database is a fresh SQLite file, or a fresh PostgreSQL database next to ``--postgres``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from redis.exceptions import ResponseError

from meshauth.bench.processes import service_env
from meshauth.bench.valkey_here import local_valkey
from meshauth.db import create_engine, migrate
from meshauth.db.tables import audit_log
from meshauth.redis_client import RedisConn, connect

SAMPLE = 0.25


async def _count(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one())


async def _backlog(redis: RedisConn, partitions: int) -> int:
    total = 0
    for n in range(partitions):
        try:
            groups = await redis.xinfo_groups(f"meshauth:bus:audit:{n}")
        except ResponseError:  # not created yet
            continue
        for g in groups:
            if g["name"] == b"audit":
                total += int(g["lag"] or 0) + int(g["pending"])
    return total


async def _phase(
    url: str, db_url: str, env: dict[str, str], var: Path, *, rate: int, amount: int, partitions: int
) -> dict[str, Any]:
    engine = create_engine(db_url)
    redis = connect(url)
    before = await _count(engine)
    cmd = [sys.executable, "-m", "meshauth.bench.bus_publish", url, str(rate), str(amount), str(partitions)]
    pub = subprocess.Popen([*cmd, str(var / "spool")], env=env, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    samples: list[tuple[float, int, int]] = []
    try:
        expected = amount if rate == 0 else rate * amount
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = time.time()
            stored = await _count(engine) - before
            samples.append((now, stored, await _backlog(redis, partitions)))
            # Until the backlog is zero too: the last batch entry is acked just after its rows commit.
            if stored >= expected and pub.poll() is not None and samples[-1][2] == 0:
                break
            await asyncio.sleep(SAMPLE)
        out, _ = pub.communicate(timeout=60)
        published = json.loads(out.strip().splitlines()[-1])
    finally:
        if pub.poll() is None:
            pub.kill()
        await redis.aclose()
        await engine.dispose()
    start, end = published["started"], published["published_at"]
    done_at = next((t for t, stored, _ in samples if stored >= published["published"]), samples[-1][0])
    drained_at = next((t for t, _, backlog in samples if t >= end and backlog == 0), None)
    in_window = [(t, s) for t, s, _ in samples if start <= t <= end]
    window_rate = (
        (in_window[-1][1] - in_window[0][1]) / (in_window[-1][0] - in_window[0][0]) if len(in_window) > 1 else 0.0
    )
    return {
        "offered_rate": rate,
        "published": published["published"],
        "dropped": published["dropped"],
        "stored": samples[-1][1],
        "publish_seconds": end - start,
        "publish_rate": published["published"] / max(end - start, 1e-9),
        "committed_rate_while_publishing": window_rate,
        "end_to_end_rate": published["published"] / max(done_at - start, 1e-9),
        "max_backlog": max(b for _, _, b in samples),
        "backlog_zero_after_publish_end_s": None if drained_at is None else max(0.0, drained_at - end),
        "all_stored_after_publish_end_s": done_at - end,
    }


def run(*, rate: int, seconds: int, burst: int, workers: int, partitions: int, postgres: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-bus-") as tmp, local_valkey() as valkey:
        var = Path(tmp)
        url = valkey.url
        db_name = None
        if postgres:
            db_name = f"meshauth_bench_bus_{secrets.token_hex(3)}"
            asyncio.run(_admin(postgres, f'CREATE DATABASE "{db_name}"'))
            db_url = "postgresql+asyncpg://" + postgres.split("://", 1)[1].rsplit("/", 1)[0] + f"/{db_name}"
        else:
            db_url = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        migrate(db_url)
        env = service_env(var, url, MESHAUTH_DATABASE_URL=db_url, MESHAUTH_BUS_PARTITIONS=str(partitions))
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        procs = [
            subprocess.Popen([sys.executable, "-m", "meshauth", "worker", "audit", "--no-migrate"], env=env)
            for _ in range(workers)
        ]
        try:
            sustained = asyncio.run(_phase(url, db_url, env, var, rate=rate, amount=seconds, partitions=partitions))
            bursty = asyncio.run(_phase(url, db_url, env, var, rate=0, amount=burst, partitions=partitions))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            if db_name and postgres:
                asyncio.run(_admin(postgres, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    database = "postgresql" if postgres else "sqlite"
    return {"database": database, "workers": workers, "partitions": partitions, "sustained": sustained, "burst": bursty}


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def report(r: dict[str, Any]) -> str:
    s, b = r["sustained"], r["burst"]
    return "\n".join(
        [
            f"{r['database']}, {r['workers']} audit worker(s), {r['partitions']} partitions:",
            f"- sustained: offered {s['offered_rate']}/s for {s['publish_seconds']:.1f} s, published {s['published']}"
            f" (dropped {s['dropped']}), stored {s['stored']}; committed rows/s while publishing"
            f" {s['committed_rate_while_publishing']:.0f}; end to end {s['end_to_end_rate']:.0f}/s;"
            f" max backlog {s['max_backlog']}; backlog zero {_s(s['backlog_zero_after_publish_end_s'])} after"
            f" the last publish",
            f"- burst: {b['published']} events published in {b['publish_seconds']:.2f} s"
            f" ({b['publish_rate']:.0f}/s), max backlog {b['max_backlog']}, all stored"
            f" {b['all_stored_after_publish_end_s']:.2f} s after the last publish"
            f" (end to end {b['end_to_end_rate']:.0f}/s);"
            f" backlog zero after {_s(b['backlog_zero_after_publish_end_s'])}",
        ]
    )


def _s(seconds: float | None) -> str:
    return "never (within the run)" if seconds is None else f"{seconds:.2f} s"
