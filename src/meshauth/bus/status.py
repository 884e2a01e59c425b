"""What ``meshauth bus status`` shows: every bus stream, its groups, consumers, lag, pending entries
and dead-letter size, read with XINFO (nothing is changed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from meshauth.redis_client import RedisConn


@dataclass
class GroupStatus:
    name: str
    lag: int | None  # entries not yet delivered to the group (None: Redis cannot tell, after a trim)
    pending: int  # delivered, not yet acknowledged
    consumers: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pending, idle ms)


@dataclass
class PartitionStatus:
    key: str
    length: int
    groups: list[GroupStatus]


@dataclass
class StreamStatus:
    name: str
    partitions: list[PartitionStatus]
    dead_letters: int

    def group_totals(self) -> dict[str, tuple[int | None, int]]:
        totals: dict[str, tuple[int | None, int]] = {}
        for p in self.partitions:
            for g in p.groups:
                lag, pending = totals.get(g.name, (0, 0))
                totals[g.name] = (None if lag is None or g.lag is None else lag + g.lag, pending + g.pending)
        return totals


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def collect(redis: RedisConn, prefix: str) -> list[StreamStatus]:
    keys: dict[str, dict[int, str]] = {}
    dead: dict[str, str] = {}
    async for raw in redis.scan_iter(match=f"{prefix}bus:*", _type="stream", count=1000):
        key = _s(raw)
        rest = key[len(prefix) + len("bus:") :]
        name, _, part = rest.rpartition(":")
        if part == "dead":
            dead[name] = key
        elif part.isdigit() and name:
            keys.setdefault(name, {})[int(part)] = key
    out = []
    for name in sorted(set(keys) | set(dead)):
        partitions = []
        for n in sorted(keys.get(name, {})):
            key = keys[name][n]
            groups = []
            try:
                infos = await redis.xinfo_groups(key)
            except ResponseError:
                infos = []
            for info in infos:
                g = GroupStatus(_s(info["name"]), info.get("lag"), int(info["pending"]))
                for c in await redis.xinfo_consumers(key, _s(info["name"])):
                    g.consumers[_s(c["name"])] = (int(c["pending"]), int(c["idle"]))
                groups.append(g)
            partitions.append(PartitionStatus(key, int(await redis.xlen(key)), groups))
        dead_len = int(await redis.xlen(dead[name])) if name in dead else 0
        out.append(StreamStatus(name, partitions, dead_len))
    return out
