"""``check_many`` with the caches and single-flight off: the checks go to the service as they are.

With nothing to look up, share or keep, ``_many.py``'s bookkeeping per item (a ``_Miss`` each, the
flight table, a task and a shield so that joiners outlive their caller) answers nobody: here the
calls are made inline and the answers checked per distinct state, as ``_many._deliver`` checks them
(never from a state older than the floor), each failure falling back for its own items only. It is
the path the batch-efficiency benchmark measures (caches off: docs/performance.md, "Stop 20, branch
batch3").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from meshauth.client._answers import Unavailable
from meshauth.client._breaker import CircuitBreaker
from meshauth.client._models import Decision, State
from meshauth.client._request import Deadline, Pending
from meshauth.client._stored import DecisionStore
from meshauth.client._tracking import StateTracker

__all__ = ["Flush", "answer_plain"]

Flush = Callable[[list[Pending]], Awaitable[list[Decision | BaseException]]]


async def answer_plain(
    pending: list[Pending],
    flush: Flush,
    max_batch: int,
    breaker: CircuitBreaker | None,
    tracker: StateTracker,
    floor: State | None,
    when: float,
) -> list[Decision]:
    if breaker is not None and breaker.rejecting():
        return [DecisionStore.deny("circuit breaker open") for _ in pending]
    chunks = [pending[k : k + max_batch] for k in range(0, len(pending), max_batch)]
    deadline = Deadline(when)
    try:
        if len(chunks) == 1:
            got = [await _call(flush, chunks[0])]
        else:
            got = await asyncio.gather(*(_call(flush, chunk) for chunk in chunks))
    except asyncio.CancelledError:
        if not deadline.expired():
            raise
        return [DecisionStore.deny("deadline passed") for _ in pending]
    finally:
        deadline.cancel()
    out: list[Decision] = []
    last: tuple[int | None, int | None] = (None, None)  # the state last checked (a batch has one)
    for results in got:
        for d in results:
            if isinstance(d, BaseException):
                out.append(DecisionStore.deny(str(d) or type(d).__name__))
            elif d.error is not None:
                out.append(d)  # a bad question is answered as such
            elif (d.revision, d.entities_version) == last:
                out.append(d)
            else:
                state = d.state
                assert state is not None
                if not state.covers(floor):
                    stale = f"the service answered from revision {state.revision}, older than one already seen"
                    out.append(DecisionStore.deny(stale))
                    continue
                last = (d.revision, d.entities_version)
                tracker.learn(state.join(floor))
                out.append(d)
    return out


async def _call(flush: Flush, chunk: list[Pending]) -> list[Decision | BaseException]:
    try:
        results = await flush(chunk)
    except Exception as exc:  # noqa: BLE001 - the call failed: every item of this chunk fails closed
        return [exc] * len(chunk)
    if len(results) != len(chunk):
        return [Unavailable(f"{len(results)} answers for {len(chunk)} checks")] * len(chunk)
    return results
