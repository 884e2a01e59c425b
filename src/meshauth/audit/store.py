"""Writing ``audit_log``: one batched insert per handled batch, idempotent by event id.

A redelivered event (a consumer died before its ack, a spool replayed what Redis had taken) hits the
primary key and is skipped (``ON CONFLICT DO NOTHING``), on SQLite and PostgreSQL alike. A database
that cannot be reached is a ``TransientError`` for the consumer (retried without counting attempts);
any other failure is the event's own and ends in the dead-letter stream after the attempts.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.bus.entries import Delivery
from meshauth.bus.events import AuditEvent
from meshauth.bus.handling import TransientError

# Raised by the drivers themselves (not wrapped by SQLAlchemy on this path) when the database is away.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    sqlite3.OperationalError,  # "database is locked" above all
)

# Column widths of audit_log: longer values are cut rather than refused (an audit row beats none).
_WIDTHS = {"subject": 256, "action": 256, "store": 64, "client_id": 128}


def _text(value: str, width: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL; keep the row, mark the character.
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value if width is None or len(value) <= width else value[:width]


COLUMNS = (
    "id", "time_us", "type", "subject", "subject_type", "decision", "action", "store", "resource",
    "client_id", "status", "reason", "latency_us",
)  # fmt: skip
Row = tuple[str, int, str, str, str, str | None, str, str, str, str, int, str, int]

# PostgreSQL: one statement per batch, the columns as arrays (asyncpg encodes them in C).
_PG_INSERT = (
    "INSERT INTO audit_log (id, time_us, type, subject, subject_type, decision, action, store, resource,"
    " client_id, status, reason, latency_us)"
    " SELECT * FROM unnest($1::varchar[], $2::bigint[], $3::varchar[], $4::varchar[], $5::varchar[],"
    " $6::varchar[], $7::varchar[], $8::varchar[], $9::text[], $10::varchar[], $11::int[], $12::text[],"
    " $13::bigint[])"
    " ON CONFLICT (id) DO NOTHING"
)
_SQLITE_INSERT = (
    "INSERT INTO audit_log (id, time_us, type, subject, subject_type, decision, action, store, resource,"
    " client_id, status, reason, latency_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO NOTHING"
)


def row(event: AuditEvent) -> Row:
    return (
        _text(event.id),  # an id's length is the schema's (``events.AuditEvent``)
        int(event.time * 1_000_000),
        event.type,
        _text(event.subject, _WIDTHS["subject"]),
        _text(event.subject_type, 16),
        event.decision,
        _text(event.action, _WIDTHS["action"]),
        _text(event.store, _WIDTHS["store"]),
        _text(event.resource),
        _text(event.client_id, _WIDTHS["client_id"]),
        event.status,
        _text(event.reason),
        event.latency_us,
    )


def as_dict(r: Row) -> dict[str, Any]:
    return dict(zip(COLUMNS, r, strict=True))


class AuditWriter:
    """The audit worker's handler. Writes through the driver (one array INSERT on PostgreSQL, one
    ``executemany`` on SQLite) on a connection held between batches: a pool checkout per batch cost a
    ping (PostgreSQL) or a rollback through aiosqlite's thread (~3 ms), more than a small batch's insert."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._conn: AsyncConnection | None = None
        self.stored = 0

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __call__(self, deliveries: Sequence[Delivery]) -> None:
        rows = [row(d.event) for d in deliveries]
        try:
            await self._insert(rows)
        except (OperationalError, InterfaceError) as exc:
            raise TransientError(f"audit_log unavailable: {type(exc.orig).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise TransientError("audit_log connection lost") from exc
            raise
        except _UNAVAILABLE as exc:
            raise TransientError(f"audit_log unavailable: {exc!r}") from exc
        self.stored += len(rows)

    async def _insert(self, rows: list[Row]) -> None:
        try:
            if self._conn is None:
                self._conn = await self._engine.connect()
            raw = await self._conn.get_raw_connection()
            driver: Any = raw.driver_connection
            if self._postgres:
                await driver.execute(_PG_INSERT, *(list(col) for col in zip(*rows, strict=True)))
            else:
                await driver.executemany(_SQLITE_INSERT, rows)
                await driver.commit()
        except BaseException:
            # The connection's state is unknown (a failed statement, a cancelled await): drop it, the
            # next batch takes a new one.
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
            raise
