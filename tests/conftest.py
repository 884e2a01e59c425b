"""Fixtures shared by every test: a real SQL database (SQLite, and PostgreSQL when one answers) and a
real Valkey (embedded, private to this test run, flushed before each test).

PostgreSQL: ``MESHAUTH_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Locally the PostgreSQL half of each database test skips, saying why, when nothing answers there;
with ``MESHAUTH_REQUIRE_POSTGRES=1`` (CI) it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from meshauth.db import metadata, migrate

PG_URL = os.environ.get("MESHAUTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("MESHAUTH_REQUIRE_POSTGRES") == "1"
ADMIN_TIMEOUT = 10.0  # seconds: the tests' own Redis commands (flush, seeding, polls), not the services'


def _pg_dsn(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy, which is faster than migrating again."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped at the end."""
    name = f"meshauth_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"MESHAUTH_REQUIRE_POSTGRES=1 but PostgreSQL at {PG_URL} is not usable: {exc}")
        pytest.skip(f"no PostgreSQL reachable at {PG_URL} ({exc}); set MESHAUTH_TEST_POSTGRES_URL")
    url = "postgresql+asyncpg://" + _pg_dsn(name).split("://", 1)[1]
    migrate(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database URL: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "meshauth.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_all(url))
    yield url


async def _truncate_all(url: str) -> None:
    dsn = "postgresql://" + url.split("://", 1)[1]
    conn = await asyncpg.connect(dsn)
    try:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {names} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite database, for tests whose subject is not the SQL dialect."""
    path = tmp_path / "meshauth.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def redis(valkey_url: str) -> AsyncIterator[Redis]:
    """The tests' own async client to this run's embedded Valkey, flushed first (never the machine's
    shared Redis): it seeds, polls, announces and records, and is handed to the code under test where
    that code takes a client (L2 caches, audit hooks).

    Its timeouts are the fixtures' generous ones, not the services' 0.5 s command / 1 s connect: under a
    loaded full run one ``FLUSHALL``, ``XADD`` or ``XLEN`` of the test's own outlasted 0.5 s (a
    ``TimeoutError`` in the test, not in the code under test), and connecting timed out at load average
    23. No test here is about this client's timeouts: the tests of how the services behave when Redis
    is slow or stopped stop an embedded Valkey of their own and connect to it with the services'
    defaults (``meshauth.redis_client.connect``)."""
    client = Redis.from_url(
        valkey_url.replace("valkey://", "redis://", 1),  # as meshauth.redis_client.connect reads it
        socket_timeout=ADMIN_TIMEOUT,
        socket_connect_timeout=ADMIN_TIMEOUT,
        health_check_interval=30,
    )
    try:
        await client.flushall()
        yield client
    finally:
        await client.aclose()
