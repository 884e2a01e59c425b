"""Stream names, partitions and the groups that read them.

A logical stream (``audit``) is ``partitions`` Redis streams, ``<prefix>bus:audit:<n>``; an event goes to
partition ``crc32(key) % partitions`` (crc32, not ``hash``: every process must agree). Its groups are
declared here so that whoever comes first creates all of them, at id 0: an event published before a
worker ever ran is kept for it, and trimming never drops what a group has not read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

AUDIT = "audit"
# The audit stream is read twice: into audit_log, and into per-minute analytics.
GROUPS: dict[str, tuple[str, ...]] = {AUDIT: ("audit", "analytics")}


@dataclass(frozen=True, slots=True)
class StreamNames:
    prefix: str
    name: str
    partitions: int

    def partition(self, n: int) -> str:
        return f"{self.prefix}bus:{self.name}:{n}"

    def all(self) -> list[str]:
        return [self.partition(n) for n in range(self.partitions)]

    def of_key(self, key: str) -> str:
        return self.partition(partition_of(key, self.partitions))

    @property
    def dead(self) -> str:
        return f"{self.prefix}bus:{self.name}:dead"

    def lease(self, group: str, n: int) -> str:
        return f"{self.prefix}bus:lease:{self.name}:{group}:{n}"

    def released(self, group: str, n: int) -> str:
        """The consumers that gave partition ``n`` back cleanly (their pending entries may move at once)."""
        return f"{self.prefix}bus:released:{self.name}:{group}:{n}"

    def members(self, group: str) -> str:
        return f"{self.prefix}bus:members:{self.name}:{group}"

    @property
    def trim_lock(self) -> str:
        return f"{self.prefix}bus:trim:{self.name}"

    @property
    def groups(self) -> tuple[str, ...]:
        return GROUPS.get(self.name, ())


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions
