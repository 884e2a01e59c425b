"""Database connection pool use, as metrics: connections open and checked out (summed over a
service's live workers), and checkouts (one per transaction or query that needed a connection)."""

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


def _connect(_dbapi: Any, _record: Any) -> None:
    OPEN.inc()


def _close(_dbapi: Any, _record: Any) -> None:
    OPEN.dec()


def _checkout(_dbapi: Any, _record: Any, _proxy: Any) -> None:
    IN_USE.inc()
    CHECKOUTS.add()


def _checkin(_dbapi: Any, _record: Any) -> None:
    IN_USE.dec()


def watch(engine: AsyncEngine) -> AsyncEngine:
    """Count ``engine``'s pool events (returns the engine)."""
    pool = engine.sync_engine.pool
    event.listen(pool, "connect", _connect)
    event.listen(pool, "close", _close)
    event.listen(pool, "checkout", _checkout)
    event.listen(pool, "checkin", _checkin)
    return engine
