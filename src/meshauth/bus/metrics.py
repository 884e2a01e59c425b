"""The bus's metrics (plain-int counters read at scrape time; labels are stream names and reasons)."""

from __future__ import annotations

from meshauth.observability.metrics import IntCounters

PUBLISHED = IntCounters("meshauth_bus_published", "Events written to Redis, by stream.", ["stream"])
SPOOLED = IntCounters("meshauth_bus_spooled", "Events written to the local spool (Redis unreachable).", ["stream"])
DROPPED = IntCounters(
    "meshauth_bus_dropped",
    "Events dropped, by stream and reason (buffer_full: buffer and spool full; oversized: refused at publish).",
    ["stream", "reason"],
)
HANDLED = IntCounters(
    "meshauth_bus_handled", "Events handled and acknowledged, by stream and group.", ["stream", "group"]
)
DEAD_LETTERED = IntCounters(
    "meshauth_bus_dead_lettered", "Entries moved to the dead-letter stream, by stream and group.", ["stream", "group"]
)
