"""Several runs of one point (scenario, offered rate) folded into one: the median of each percentile
and of the achieved rate, the spread (lowest and highest) of p50/p95/p99, and summed counts.

On a shared machine one run of a few seconds moves by tens of percent from one minute to the next; the
median of repeats taken at different moments (the harness interleaves them with the other rates) is
the figure a rerun can be compared with, and the spread says how far one run may land from it.
"""

from __future__ import annotations

import statistics
from typing import Any

SPREAD = ("50", "95", "99")


def _summed(runs: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for run in runs:
        for k, n in run.get(key, {}).items():
            out[k] = out.get(k, 0) + int(n)
    return dict(sorted(out.items()))


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One point from its repeats (each a ``drivers.Run`` as a dict, same offered rate); ValueError
    for no runs or runs at different rates."""
    if not runs:
        raise ValueError("no runs to combine")
    if len({r["offered"] for r in runs}) != 1:
        raise ValueError("runs at different offered rates")
    with_pct = [r for r in runs if r["percentiles"]]
    keys = set.intersection(*(set(r["percentiles"]) for r in with_pct)) if with_pct else set()
    pct = {q: statistics.median(r["percentiles"][q] for r in with_pct) for q in sorted(keys, key=float)}
    spread = {
        q: [min(r["percentiles"][q] for r in with_pct), max(r["percentiles"][q] for r in with_pct)]
        for q in SPREAD
        if q in keys
    }
    point: dict[str, Any] = {
        "offered": runs[0]["offered"],
        "achieved": statistics.median(r["achieved"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "percentiles": pct,
        "spread": spread,
        "statuses": _summed(runs, "statuses"),
        "socket_errors": _summed(runs, "socket_errors"),
        "repeats": len(runs),
        "command": runs[0]["command"],
        "runs": runs,
    }
    caches = [r["cache"] for r in runs if "cache" in r]
    if caches:
        point["cache"] = {k: sum(c.get(k, 0.0) for c in caches) for k in caches[0]}
    return point


def by_rate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs in any order (repeats interleaved across rates) → one combined point per rate, in the
    order the rates first appear."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["offered"], []).append(run)
    return [combine(g) for g in groups.values()]
