"""Writing ``audit_log``: one batched insert per handled batch, idempotent by event id.

A redelivered event (a consumer died before its ack, a spool replayed what Redis had taken) hits the
primary key and is skipped (``ON CONFLICT DO NOTHING``), on SQLite and PostgreSQL alike. A database
that cannot be reached is a ``TransientError`` for the consumer (retried without counting attempts);
any other failure is the event's own and ends in the dead-letter stream after the attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.bus.consumer import Delivery, TransientError
from meshauth.bus.events import AuditEvent
from meshauth.db.tables import audit_log

# Column widths of audit_log: longer values are cut rather than refused (an audit row beats none).
_WIDTHS = {"subject": 256, "action": 256, "store": 64, "client_id": 128}


def _text(value: str, width: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL; keep the row, mark the character.
    value = value.replace("\x00", "\ufffd")
    return value if width is None else value[:width]


def row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time_us": int(event.time * 1_000_000),
        "type": event.type,
        "subject": _text(event.subject, _WIDTHS["subject"]),
        "subject_type": event.subject_type,
        "decision": event.decision,
        "action": _text(event.action, _WIDTHS["action"]),
        "store": _text(event.store, _WIDTHS["store"]),
        "resource": _text(event.resource),
        "client_id": _text(event.client_id, _WIDTHS["client_id"]),
        "status": event.status,
        "reason": _text(event.reason),
        "latency_us": event.latency_us,
    }


class AuditWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert(audit_log).on_conflict_do_nothing(index_elements=["id"])
        self.stored = 0

    async def __call__(self, deliveries: Sequence[Delivery]) -> None:
        rows = [row(d.event) for d in deliveries]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(self._insert, rows)
        except (OperationalError, InterfaceError) as exc:
            raise TransientError(f"audit_log unavailable: {type(exc.orig).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise TransientError("audit_log connection lost") from exc
            raise
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"audit_log unavailable: {exc}") from exc
        self.stored += len(rows)
