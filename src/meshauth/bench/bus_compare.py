"""Bus on vs off (issue 13's scenario list; issue 12's target ≤ 1.10×): the warm gate in authn mode
with auditing on — every check publishes a ``gate.decision`` event, and the audit worker stores them in
``audit_log`` — against an identical gate with auditing off, at the same fixed offered rates, in the
same run. The modes alternate within each round and swap order every round (off, on; on, off; …), so
drift on the shared machine hits both alike; each point is the median of the rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from meshauth.bench import drivers, repeats, workload
from meshauth.bench.stack import Stack

MODES = ("off", "on")
CONNECTIONS = 30


def order(round_index: int) -> tuple[str, ...]:
    """The modes' order in a round: alternated, so neither always runs first (warmer, or later)."""
    return MODES if round_index % 2 == 0 else MODES[::-1]


def run(
    drive: Callable[[str, float, float], dict[str, Any]], rates: tuple[int, ...], seconds: float, rounds: int
) -> dict[str, Any]:
    """``drive(mode, rate, seconds)`` → one run as a dict; every (round, rate, mode) once."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for i in range(rounds):
        for rate in rates:
            for mode in order(i):
                runs[mode].append(drive(mode, rate, seconds))
    return {"rates": list(rates), "rounds": rounds, **{mode: repeats.by_rate(runs[mode]) for mode in MODES}}


def ratio(doc: dict[str, Any], rate: int, q: str = "95") -> float | None:
    """Median p95 with auditing on over median p95 off at ``rate``; None when either is missing."""
    points = {mode: next((p for p in doc.get(mode, []) if p["offered"] == rate), None) for mode in MODES}
    on, off = points["on"], points["off"]
    if not on or not off or q not in on["percentiles"] or not off["percentiles"].get(q):
        return None
    return float(on["percentiles"][q]) / float(off["percentiles"][q])


def drive(stack: Stack, mode: str, rate: float, seconds: float) -> dict[str, Any]:
    """One paced run of the warm authn check on the gate with auditing ``mode``."""
    url = (stack.authn_url if mode == "on" else stack.quiet_url) + workload.gate_path(0)
    headers = {"authorization": f"Bearer {stack.tokens[0]}"}
    return asdict(drivers.wrk(url, seconds=seconds, connections=CONNECTIONS, rate=rate, headers=headers))
