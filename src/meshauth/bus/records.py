"""What the producer's buffer holds, and how a flush turns it into stream records.

A buffered item is either a *record*, ``(partition stream, encoded event)`` — what ``publish`` appends,
the event built and encoded by its caller's request — or a *deferred event*, ``(make, stream,
*fields)`` — what ``Producer.defer`` appends: the request pays for one tuple and the flush calls
``make(item)`` to build the event (its id is drawn then; its time is one of the fields, taken at the
request), encodes it and picks its partition. The gate's decision hook defers (``auth.audit_hooks``):
building, numbering and encoding an event is ~1 µs of Python per request, ten calls deep, on the loop
that serves the requests; a tuple is one allocation. The flush does that work in chunks of
``CHUNK`` with the loop let go between them, so a flush is never one long stall.

Records and deferred events share one deque, so events of one key stay in publish order whichever
way they were queued. Records are told apart by their length (two).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from meshauth.bus.events import AuditEvent, batches, encode
from meshauth.bus.spool import Record

log = logging.getLogger(__name__)

CHUNK = 64  # deferred events built per turn of the loop (~60 µs)

# (make, stream, *fields): ``make`` gets the whole tuple back and returns the event.
Deferred = tuple[Any, ...]
Item = Record | Deferred
Maker = Callable[[Deferred], AuditEvent]


def build(
    items: list[Item], partition: Callable[[str, str], str], max_bytes: int, refused: Callable[[str, str], None]
) -> list[Record]:
    """``items`` as records, in order: deferred events built, encoded and given their partition. One
    too large to send (``max_bytes``) is left out and counted by ``refused(stream, "oversized")``; one
    whose ``make`` fails (a bug) is logged and counted as ``"invalid"`` — neither may stop the flush of
    the others."""
    out: list[Record] = []
    for item in items:
        if len(item) == 2:
            out.append(item)
            continue
        stream = item[1]
        try:
            event = item[0](item)
            data = encode(event)
        except Exception:
            log.exception("bus: a deferred %s event could not be built; left out", stream)
            refused(stream, "invalid")
            continue
        if len(data) > max_bytes:
            refused(stream, "oversized")
            continue
        out.append((partition(stream, event.key), data))
    return out


def by_partition(records: list[Record]) -> list[Record]:
    """One batch entry per partition (``events.batches``), each holding its events in publish order."""
    grouped: dict[str, list[bytes]] = {}
    for key, data in records:
        events = grouped.get(key)
        if events is None:
            grouped[key] = [data]
        else:
            events.append(data)
    return [(key, batch) for key, events in grouped.items() for batch in batches(events)]
