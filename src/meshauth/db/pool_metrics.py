"""Database use, as metrics: connections open and checked out (summed over a service's live
workers), checkouts (one per transaction or query that needed a connection), and SQL statements sent,
by kind (what the token endpoint's benchmark divides by tokens issued: issue 11's queries per request).

A statement is counted where SQLAlchemy hands it to the driver (``before_cursor_execute``): an
``executemany`` is one statement; the pool's liveness ping and SQLite's connect pragmas go to the driver
directly and are not counted (a checkout is, and on PostgreSQL each checkout pings once)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.observability.metrics import IntCounters

OPEN = Gauge(
    "meshauth_db_connections_open", "Database connections open (pooled or in use).", multiprocess_mode="livesum"
)
IN_USE = Gauge(
    "meshauth_db_connections_in_use", "Database connections checked out of the pool.", multiprocess_mode="livesum"
)
CHECKOUTS = IntCounters("meshauth_db_pool_checkouts", "Connections checked out of the pool.", [])
STATEMENTS = IntCounters(
    "meshauth_db_statements", "SQL statements sent to the database, by kind (its first keyword).", ["verb"]
)
VERBS = frozenset({"select", "insert", "update", "delete"})


def _connect(_dbapi: Any, _record: Any) -> None:
    OPEN.inc()


def _close(_dbapi: Any, _record: Any) -> None:
    OPEN.dec()


def _checkout(_dbapi: Any, _record: Any, _proxy: Any) -> None:
    IN_USE.inc()
    CHECKOUTS.add()


def _checkin(_dbapi: Any, _record: Any) -> None:
    IN_USE.dec()


def statement_verb(statement: str) -> str:
    """The metric label of a statement: select, insert, update, delete, or other (BEGIN, PRAGMA, DDL…)."""
    verb = statement.lstrip()[:6].lower()
    return verb if verb in VERBS else "other"


def _statement(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
    STATEMENTS.add(statement_verb(statement))


def watch(engine: AsyncEngine) -> AsyncEngine:
    """Count ``engine``'s pool events and statements (returns the engine)."""
    event.listen(engine.sync_engine, "before_cursor_execute", _statement)
    pool = engine.sync_engine.pool
    event.listen(pool, "connect", _connect)
    event.listen(pool, "close", _close)
    event.listen(pool, "checkout", _checkout)
    event.listen(pool, "checkin", _checkin)
    return engine
