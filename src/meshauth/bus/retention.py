"""Retention: trim a partition to what every group has acknowledged (``XTRIM MINID``).

Since Redis 7, XAUTOCLAIM drops entries trimmed while pending (FIELD-NOTES), so nothing at or after
the oldest pending entry of any group, or after any group's last-delivered id, is trimmed. A group
that is declared but missing (Redis lost it) stops trimming until it is created again. The producer's
approximate ``MAXLEN`` on every XADD is the safety valve for a group that never reads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.exceptions import ResponseError

from meshauth.bus.streams import StreamNames
from meshauth.redis_client import RedisConn

# Every worker process reads under a new consumer name (``Consumer.name``): without this, each start
# left one more consumer in every partition's group for good — Redis memory, XINFO replies and
# ``meshauth bus status`` growing with every restart and rolling deploy. A consumer holding no pending
# entry has nothing to lose, and Redis creates it again at its next read; checked and deleted in one
# script, so nothing is delivered to it in between. Idle for an hour: a live reader is seen every
# ``bus_block`` seconds, so none that is reading is deleted under its blocked read.
IDLE_CONSUMER_MS = 3_600_000
_FORGET_IDLE = """
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
"""


def _parse(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def safe_minid(redis: RedisConn, stream: str, groups: tuple[str, ...]) -> str | None:
    """The lowest id some declared group still needs, or None when unknown (do not trim)."""
    try:
        infos: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    by_name = {(g["name"].decode() if isinstance(g["name"], bytes) else g["name"]): g for g in infos}
    lowest: tuple[int, int] | None = None
    for group in groups:
        info = by_name.get(group)
        if info is None:
            return None
        # The oldest pending entry, else the one after the last delivered. (Pending may have drained
        # between XINFO and XPENDING: then "min" is None, and last-delivered-id, read before, is safe.)
        oldest = (await redis.xpending(stream, group))["min"] if info["pending"] else None
        if oldest is not None:
            needed = _parse(oldest)
        else:
            ms, seq = _parse(info["last-delivered-id"])
            needed = (ms, seq + 1)
        lowest = needed if lowest is None else min(lowest, needed)
    return None if lowest is None else f"{lowest[0]}-{lowest[1]}"


async def trim(redis: RedisConn, names: StreamNames, *, idle_consumer_ms: int = IDLE_CONSUMER_MS) -> int:
    """Trim every partition of ``names``, and forget its idle consumers; returns the number of entries
    removed."""
    removed = 0
    for stream in names.all():
        minid = await safe_minid(redis, stream, names.groups)
        if minid is not None:
            removed += int(await redis.xtrim(stream, minid=minid, approximate=False))
        for group in names.groups:
            with contextlib.suppress(ResponseError):  # no such stream or group yet
                await redis.eval(_FORGET_IDLE, 1, stream, group, idle_consumer_ms)
    return removed
