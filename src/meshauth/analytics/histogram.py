"""A sparse log histogram of latencies: four buckets per doubling (each ~19 % wide), merged by adding."""

from __future__ import annotations

import math

STEPS_PER_DOUBLING = 4
MAX_BUCKET = 127  # 2^32 µs: over an hour


def bucket(latency_us: int) -> int:
    if latency_us <= 1:
        return 0
    return min(MAX_BUCKET, int(STEPS_PER_DOUBLING * math.log2(latency_us)))


def upper_us(index: int) -> float:
    return float(2 ** ((index + 1) / STEPS_PER_DOUBLING))


def quantile_us(counts: dict[int, int], q: float) -> float | None:
    """The upper edge of the bucket holding quantile ``q`` (None for an empty histogram)."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return upper_us(index)
    return upper_us(max(counts))
