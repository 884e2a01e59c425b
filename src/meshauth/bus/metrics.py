"""The bus's metrics. Counters are plain ints (labels are stream names, groups and reasons); the
backlog gauges are Redis's figures, read by ``gauges.StreamGauges``."""

from __future__ import annotations

from prometheus_client import Gauge

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
# The same Redis figures whichever worker reads them, each read every few seconds: the largest of
# the live workers' is shown (at most one interval old).
STREAM_LAG = Gauge(
    "meshauth_bus_stream_lag",
    "Entries not yet delivered to the group, over every partition (Redis XINFO GROUPS lag).",
    ["stream", "group"],
    multiprocess_mode="livemax",
)
PENDING = Gauge(
    "meshauth_bus_pending",
    "Entries delivered to the group and not yet acknowledged, over every partition.",
    ["stream", "group"],
    multiprocess_mode="livemax",
)
DEAD_LETTERS = Gauge(
    "meshauth_bus_dead_letters",
    "Entries in the stream's dead-letter stream.",
    ["stream"],
    multiprocess_mode="livemax",
)
