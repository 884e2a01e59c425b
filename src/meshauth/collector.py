"""The garbage collector's settings for a serving process: what is alive after start-up is frozen,
and full collections are held back.

CPython runs a full (generation 2) collection once ten young (generation 1) collections have run and
the objects promoted since the last full one exceed a quarter of those it kept. A full collection
walks every tracked object not frozen, on the event loop, with the GIL held. Freezing what start-up
made (modules, the app, compiled policies) keeps that walk short while nothing new lives long — but a
gate under traffic that never repeats keeps filling its memos (the route table's matches and the
prepared questions, each entry ~10 tracked objects, cleared at 16,384 entries), so the walk grows
again and the quarter is reached every ~1.3 s.

Measured (docs/performance.md, "Stop 23: the cold gate's tail was full garbage collections"): the cold
benchmark's gate (every request a new path, 3,000 req/s, gate + policy service + Valkey on one core)
ran **10 full collections in 16 s, 512–678 ms in all, up to 108–129 ms each** (wall time: the core is
shared), each finding 0–20 objects to free; p99 70–100 ms. With full collections considered only after
:data:`FULL_AFTER` generation-1 collections: none in the run, p99 14 ms; over a 155 s run, one (86.6 ms
— a walk as long as before, every ~2 minutes at ~86 generation-0 collections a second).
What it defers is only cyclic garbage that lived long enough to be promoted twice — of which every full
collection of the runs above found almost none; objects freed by reference counting (nearly all) are
freed at once as before. The young generations' thresholds are kept: a larger first threshold (5,000
and 20,000 tried) gave the same young-collection time in longer pauses.

Where the collector is incremental (the design retargeted to CPython 3.14), ``set_threshold`` ignores
the third value and pauses are short by design; freezing still applies.
"""

from __future__ import annotations

import gc

__all__ = ["FULL_AFTER", "settle"]

FULL_AFTER = 1_000  # generation-1 collections before a full one is considered; CPython's default is 10


def settle() -> None:
    """Freeze what is alive now and hold full collections back (idempotent). Call once start-up is
    done, and again after building state that lives as long as the process."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER)
