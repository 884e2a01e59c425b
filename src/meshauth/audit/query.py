"""Reading ``audit_log`` for ``GET /admin/audit``: filters validated at the edge, newest first, keyset
pagination (the cursor is the last row's ``(time_us, id)``, opaque to callers)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.bus.events import AUDIT_TYPES
from meshauth.db.tables import audit_log

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
FIELDS = ("since", "until", "type", "subject", "action", "decision", "store", "limit", "cursor")
_MAX_CHARS = {"subject": 256, "action": 256, "store": 64}
# ASCII digits only: str.isdigit() also says yes to "²" (int() raises) and to other scripts' digits.
_DECIMAL = re.compile(r"[0-9]{1,19}")
_MAX_BIGINT = 2**63 - 1  # time_us is a BIGINT: a larger cursor would be a driver error, not a 400
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


class BadFilter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since_us: int | None = None
    until_us: int | None = None
    type: str | None = None
    subject: str | None = None
    action: str | None = None
    decision: str | None = None
    store: str | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[int, str] | None = None  # the cursor: rows strictly older than this


def parse_query(pairs: list[tuple[str, str]]) -> AuditQuery:
    """Validate the query string's pairs; BadFilter names the field."""
    seen = query_values(pairs, FIELDS)
    return AuditQuery(
        since_us=parse_time(seen, "since"),
        until_us=parse_time(seen, "until"),
        type=_one_of(seen, "type", AUDIT_TYPES),
        subject=_bounded(seen, "subject"),
        action=_bounded(seen, "action"),
        decision=_one_of(seen, "decision", ("allow", "deny")),
        store=_bounded(seen, "store"),
        limit=_limit(seen),
        after=_cursor(seen),
    )


def query_values(pairs: list[tuple[str, str]], fields: tuple[str, ...]) -> dict[str, str]:
    """Each known parameter's one printable value (the audit and analytics endpoints share the rules)."""
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in fields:
            raise BadFilter(name[:64], f"unknown query parameter; accepted: {', '.join(fields)}")
        if name in seen:
            raise BadFilter(name, "given more than once")
        if "\x00" in value or not value.isprintable():
            raise BadFilter(name, "contains a control character")
        seen[name] = value
    return seen


def parse_time(seen: Mapping[str, str], name: str) -> int | None:
    value = seen.get(name)
    if value is None:
        return None
    if not _RFC3339.fullmatch(value):
        raise BadFilter(name, "must be an RFC 3339 time with an offset, e.g. 2026-12-04T10:00:00Z")
    text = value.upper().replace(" ", "T").replace("Z", "+00:00")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # Python parses microseconds; nanoseconds are cut
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadFilter(name, f"not a valid time ({exc})") from None
    return int(moment.timestamp() * 1_000_000)


def _one_of(seen: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = seen.get(name)
    if value is not None and value not in allowed:
        raise BadFilter(name, f"must be one of {', '.join(allowed)}")
    return value


def _bounded(seen: Mapping[str, str], name: str) -> str | None:
    value = seen.get(name)
    if value is not None and not 0 < len(value) <= _MAX_CHARS[name]:
        raise BadFilter(name, f"must be 1 to {_MAX_CHARS[name]} characters")
    return value


def _limit(seen: Mapping[str, str]) -> int:
    value = seen.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    if not _DECIMAL.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise BadFilter("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def encode_cursor(time_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{time_us}:{event_id}".encode()).decode().rstrip("=")


def _cursor(seen: Mapping[str, str]) -> tuple[int, str] | None:
    value = seen.get("cursor")
    if value is None:
        return None
    try:
        if len(value) > 128:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        time_text, _, event_id = raw.partition(":")
        # NUL: no id PostgreSQL stores has one, and its driver refuses it in a parameter (a DBAPIError,
        # answered 503 "a backing store is unavailable").
        if not event_id or "\x00" in event_id or not _DECIMAL.fullmatch(time_text) or int(time_text) > _MAX_BIGINT:
            raise ValueError("not ours")
        return int(time_text), event_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor", "not a cursor from a previous answer's next_cursor") from None


def rfc3339(time_us: int) -> str | None:
    """``time_us`` in RFC 3339, or None for a time no date can say (before year 1, past 9999): the bus
    refuses such events now, but a row an older release stored made every page that held it a 500."""
    try:
        moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_json(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "time": rfc3339(r["time_us"]),
        "type": r["type"],
        "subject": r["subject"],
        "subject_type": r["subject_type"],
        "decision": r["decision"],
        "action": r["action"],
        "store": r["store"],
        "resource": r["resource"],
        "client_id": r["client_id"],
        "status": r["status"],
        "reason": r["reason"],
        "latency_us": r["latency_us"],
    }


async def search(engine: AsyncEngine, q: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
    t = audit_log.c
    stmt = sa.select(audit_log)
    if q.since_us is not None:
        stmt = stmt.where(t.time_us >= q.since_us)
    if q.until_us is not None:
        stmt = stmt.where(t.time_us < q.until_us)
    for column, value in (
        (t.type, q.type),
        (t.subject, q.subject),
        (t.action, q.action),
        (t.decision, q.decision),
        (t.store, q.store),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.after is not None:
        stmt = stmt.where(sa.tuple_(t.time_us, t.id) < sa.tuple_(sa.literal(q.after[0]), sa.literal(q.after[1])))
    stmt = stmt.order_by(t.time_us.desc(), t.id.desc()).limit(q.limit + 1)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    events = [to_json(r) for r in rows]
    next_cursor = encode_cursor(rows[-1]["time_us"], rows[-1]["id"]) if more else None
    return events, next_cursor
