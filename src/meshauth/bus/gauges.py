"""The bus's backlog as gauges, for ``/metrics`` (and so Grafana and ``meshauth top``).

The workers serve no ``/metrics``; the processes that publish (the auth and policy services) do, so
each of their producers reads every declared stream's figures from Redis every ``interval`` seconds:
per group, lag (entries not yet delivered) and pending (delivered, not acknowledged), summed over
the partitions (``XINFO GROUPS``); per stream, the dead-letter stream's length (``XLEN``). A few
commands per stream and interval, off the request path. A lag Redis cannot tell (nil after a trim
past the group's last-delivered id) leaves the gauge at its last value. Redis away: the gauges keep
their last values; the producer's own metrics say the rest (``meshauth_bus_spooled_total``).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError, ResponseError

from meshauth.bus.metrics import DEAD_LETTERS, PENDING, STREAM_LAG
from meshauth.bus.streams import StreamNames
from meshauth.redis_client import RedisConn, connect, stop_reader

log = logging.getLogger(__name__)

GAUGE_SOCKET_TIMEOUT = 1.0


async def measure(redis: RedisConn, names: StreamNames) -> None:
    """Set the gauges of one logical stream from Redis."""
    # Before the first publish there is no stream and no group: nothing is behind for any declared group.
    lag: dict[str, int | None] = dict.fromkeys(names.groups, 0)
    pending: dict[str, int] = dict.fromkeys(names.groups, 0)
    for key in names.all():
        try:
            infos = await redis.xinfo_groups(key)
        except ResponseError:  # no such stream yet: nothing published, nothing behind
            infos = []
        for info in infos:
            raw = info["name"]
            group = raw.decode() if isinstance(raw, bytes) else str(raw)
            part_lag = info.get("lag")
            total = lag.get(group, 0)
            lag[group] = None if total is None or part_lag is None else total + int(part_lag)
            pending[group] = pending.get(group, 0) + int(info["pending"])
    for group, value in lag.items():
        if value is not None:
            STREAM_LAG.labels(names.name, group).set(value)
    for group, value in pending.items():
        PENDING.labels(names.name, group).set(value)
    DEAD_LETTERS.labels(names.name).set(int(await redis.xlen(names.dead)))


class StreamGauges:
    """Runs ``measure`` over ``streams`` every ``interval`` seconds until stopped."""

    def __init__(self, url: str, streams: list[StreamNames], interval: float) -> None:
        self._url = url
        self._streams = streams
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus-gauges")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_reader(task)

    async def _run(self) -> None:
        redis = connect(self._url, socket_timeout=GAUGE_SOCKET_TIMEOUT)
        try:
            while True:
                for names in self._streams:
                    try:
                        await measure(redis, names)
                    except (RedisError, OSError) as exc:
                        log.debug("bus gauges: %s not read (%s)", names.name, exc)
                    except Exception:
                        # A bug here must not end the loop for the life of the process.
                        log.exception("bus gauges: %s failed", names.name)
                await asyncio.sleep(self._interval)
        finally:
            await redis.aclose()
