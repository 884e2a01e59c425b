"""Zipf-distributed popularity for the harness workload: rank k (0-based) drawn with weight 1/(k+1)^s.

Pure Python and deterministic for a seed, so the wrk scripts replay the same precomputed sample in every
run (wrk's Lua then walks the list in order instead of drawing itself).
"""

from __future__ import annotations

import itertools
import random

ZIPF_S = 1.1


def cumulative_weights(n: int, s: float = ZIPF_S) -> list[float]:
    if n < 1:
        raise ValueError("n must be at least 1")
    if s <= 0:
        raise ValueError("s must be positive")
    return list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))


def sample(n: int, count: int, *, s: float = ZIPF_S, seed: int = 1) -> list[int]:
    """``count`` ranks in ``range(n)``; rank 0 the most popular."""
    rng = random.Random(seed)
    return rng.choices(range(n), cum_weights=cumulative_weights(n, s), k=count)


def top_share(ranks: list[int], top: int) -> float:
    """Share of the sample that falls on the ``top`` most popular ranks (what a cache of that size serves)."""
    return sum(1 for r in ranks if r < top) / len(ranks) if ranks else 0.0
