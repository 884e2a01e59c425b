"""Bus on vs off (issue 13's scenario list; issue 12's target ≤ 1.10×): the warm gate in authn mode
with auditing on — every check publishes a ``gate.decision`` event, and the audit worker stores them in
``audit_log`` — against an identical gate with auditing off, at the same fixed offered rates, in the
same run. The modes' order rotates every round, so drift on the shared machine hits them alike; each
point is the median of the rounds.

Two placements of what auditing runs besides the gate, both measured (issue 12, 05 Dec):

- ``on``: the stack's layout — the audit worker (reading the stream, writing SQL) and Valkey on core 0
  with the gates. What the gate pays here includes the worker's and Valkey's CPU on its core: the
  figure every harness run before reported (2.95× in run 4).
- ``on_apart``: for the run, the audit worker and Valkey (every thread) move to the load generator's
  core 1 and back after it — as deployed, where the worker is its own pod and Redis its own host. What
  is left on the gate's core is the gate's own auditing (hook, buffer, flush): the placement issue
  12's target is judged in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from meshauth.bench import drivers, repeats, workload
from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE
from meshauth.bench.stack import Stack

MODES = ("off", "on", "on_apart")
TARGET_MODE = "on_apart"  # the placement the issue-12 target is judged in (see above)
CONNECTIONS = 30


def order(round_index: int) -> tuple[str, ...]:
    """The modes' order in a round: rotated, so none always runs first (warmer, or later)."""
    k = round_index % len(MODES)
    return MODES[k:] + MODES[:k]


def pin(pid: int, core: str) -> None:
    """Every thread of ``pid`` onto ``core`` (a thread that has just ended is skipped)."""
    for tid in os.listdir(Path("/proc") / str(pid) / "task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {int(core)})


@contextlib.contextmanager
def apart(stack: Stack) -> Iterator[None]:
    """The audit worker and Valkey on the load generator's core for the block, then back on core 0."""
    moved = [stack.pids["audit_worker"], stack.pids["valkey"]]
    for pid in moved:
        pin(pid, CLIENT_CORE)
    try:
        yield
    finally:
        for pid in moved:
            pin(pid, SERVER_CORE)


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


def ratio(doc: dict[str, Any], rate: int, q: str = "95", mode: str = "on") -> float | None:
    """Median p95 with auditing on (``mode``) over median p95 off at ``rate``; None when either is missing."""
    on, off = (next((p for p in doc.get(m, []) if p["offered"] == rate), None) for m in (mode, "off"))
    if not on or not off or q not in on["percentiles"] or not off["percentiles"].get(q):
        return None
    return float(on["percentiles"][q]) / float(off["percentiles"][q])


def drive(stack: Stack, mode: str, rate: float, seconds: float) -> dict[str, Any]:
    """One paced run of the warm authn check on the gate with auditing ``mode``."""
    url = (stack.quiet_url if mode == "off" else stack.authn_url) + workload.gate_path(0)
    headers = {"authorization": f"Bearer {stack.tokens[0]}"}
    with apart(stack) if mode == "on_apart" else contextlib.nullcontext():
        return asdict(drivers.wrk(url, seconds=seconds, connections=CONNECTIONS, rate=rate, headers=headers))
