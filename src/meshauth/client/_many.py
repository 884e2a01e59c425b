"""``PolicyClient.check_many``: an explicit batch in one pass, not a coroutine, future and batcher
slot per item as ``check()`` (caches and single-flight off: ``_many_plain.py``). Here:

1. at most :data:`MAX_MANY` checks (more raise ``ValueError``: the pass is synchronous, and 20,000
   items held the event loop ~155 ms); every item validated (an invalid argument raises, naming
   ``checks[i]``, before anything is asked) and looked up in L1 at the client's state (and ``at_least``'s);
2. with single-flight on, identical items are asked once, an item already in flight (a concurrent
   ``check()`` or batch) joins it, the rest are claimed (``Flights.lead``) for others to join;
3. if the breaker is open every miss falls back at once; else the misses are looked up in L2 (one
   ``MGET``), the rest go to the service as ``evaluations`` calls of at most ``max_batch`` items (1
   with batching off: one ``evaluation`` call per item);
4. one deadline (the batch's ``timeout``); each answer checked and kept as ``check()`` keeps it
   (never from a state older than the floor; kept in L1/L2 under the state it stands for). A
   failure — an item, a call, the deadline — fails only the items it touched, each to its own
   fallback (a stale entry under ``stale_if_error``, else a ``policy_unavailable`` deny); the calls run
   in a task of their own, so a caller that goes away leaves joiners their answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import cast

from meshauth.client._answers import Unavailable, count_checks
from meshauth.client._breaker import CircuitBreaker
from meshauth.client._cache import DecisionL1
from meshauth.client._flight import FlightKey, Flights, LeaderGone, flight_key
from meshauth.client._keys import L1Key, request_key
from meshauth.client._many_plain import Flush, answer_plain
from meshauth.client._metrics import CACHE, SINGLEFLIGHT_JOINS
from meshauth.client._models import Check, Consistency, Decision, State
from meshauth.client._request import Deadline, Pending, checked_many
from meshauth.client._stored import DecisionStore
from meshauth.client._tracking import StateTracker
from meshauth.client._warming import Warmer

__all__ = ["MAX_MANY", "ManyParts", "check_many"]

MAX_MANY = 1024  # the service's limit per call (policy_max_evaluations): ~8 ms of loop time at most


@dataclass(frozen=True, slots=True)
class ManyParts:
    """The parts of a ``PolicyClient`` a batch goes through (``None``: that feature is off)."""

    store: str
    timeout: float
    max_batch: int
    cache_on: bool
    flush: Flush  # the caller's flush: one call for a list of checks
    breaker: CircuitBreaker | None
    stored: DecisionStore | None
    l1: DecisionL1 | None
    sf: Flights[FlightKey, Decision] | None
    warmer: Warmer | None
    tracker: StateTracker


class _Miss:
    """One question the caches could not answer, and the batch items that asked it."""

    __slots__ = ("ck", "flight", "future", "indices", "p", "rkey", "shared")

    def __init__(self, p: Pending, rkey: bytes, ck: L1Key | None, flight: FlightKey | None, i: int) -> None:
        self.p, self.rkey, self.ck, self.flight, self.indices = p, rkey, ck, flight, [i]
        self.future: asyncio.Future[Decision] | None = None  # ours to resolve (single-flight leader)
        self.shared: asyncio.Future[Decision] | None = None  # another's work in flight, joined


async def check_many(
    parts: ManyParts,
    checks: Sequence[Check],
    consistency: Consistency,
    timeout: float | None,  # noqa: ASYNC109 - one deadline for the batch, as check()'s
) -> list[Decision]:
    if not isinstance(consistency, Consistency):
        raise TypeError("consistency must be MINIMIZE_LATENCY, FULLY_CONSISTENT or at_least(state)")
    if type(checks) is not list and type(checks) is not tuple:
        checks = list(islice(checks, MAX_MANY + 1))  # any iterable of checks (read no further than needed)
    if len(checks) > MAX_MANY:
        raise ValueError(f"check_many takes at most {MAX_MANY} checks (the service's limit per call): split them")
    if not checks:
        return []
    pending = checked_many(checks, timeout, parts.timeout)
    when = pending[0].deadline
    floor = parts.tracker.seen
    if consistency.state is not None:
        floor = consistency.state.join(floor)
    if not parts.cache_on and parts.sf is None:  # nothing to look up, share or keep: _many_plain.py
        plain = await answer_plain(pending, parts.flush, parts.max_batch, parts.breaker, parts.tracker, floor, when)
        count_checks(plain)
        return plain
    sf, l1, hot = parts.sf, parts.l1, parts.warmer.hot if parts.warmer is not None else None
    need_key = parts.cache_on or sf is not None
    use_cache = parts.cache_on and floor is not None and consistency.mode != "fully_consistent"
    out: list[Decision | None] = [None] * len(pending)
    misses: list[_Miss] = []
    by_flight: dict[FlightKey, _Miss] = {}
    for i, p in enumerate(pending):
        rkey = request_key(parts.store, p.subject, p.action, p.resource, p.context, item=i) if need_key else b""
        if hot is not None:
            hot.seen(rkey)
        ck: L1Key | None = None
        if use_cache:
            assert floor is not None
            ck = (floor.revision, floor.entities_version, rkey)
            if l1 is not None:
                hit = l1.get(ck)
                if hit is not None:
                    CACHE.add("l1", "hit")
                    out[i] = hit
                    continue
                CACHE.add("l1", "miss")
        if sf is None:
            misses.append(_Miss(p, rkey, ck, None, i))
            continue
        flight = flight_key(consistency.mode, floor, rkey)
        same = by_flight.get(flight)
        if same is not None:  # asked twice in this batch: once
            same.indices.append(i)
            SINGLEFLIGHT_JOINS.add()
            continue
        by_flight[flight] = miss = _Miss(p, rkey, ck, flight, i)
        misses.append(miss)
    if misses:
        await _answer(parts, misses, out, floor, when)
    # Every item settled (_answer fails each closed at worst). A copy: past the deadline the batch's
    # work may still write into ``out`` (for the checks that joined it) after this returns.
    answers = cast("list[Decision]", out[:])
    count_checks(answers)
    return answers


async def _answer(
    parts: ManyParts, misses: list[_Miss], out: list[Decision | None], floor: State | None, when: float
) -> None:
    breaker = parts.breaker
    if breaker is not None and breaker.rejecting():
        for m in misses:
            _settle(parts, m, out, Unavailable("circuit breaker open"))
        return
    sf = parts.sf
    joins: list[_Miss] = []
    asks: list[_Miss] = []
    if sf is None:
        asks = misses
    else:
        for m in misses:
            assert m.flight is not None
            m.shared = sf.joined(m.flight)  # held now: it may end (its key forgotten) before it is awaited
            if m.shared is not None:
                SINGLEFLIGHT_JOINS.add()
                joins.append(m)
            else:
                m.future = sf.lead(m.flight)
                asks.append(m)
    deadline = Deadline(when)
    work = _start(parts, asks, out, floor) if asks else None
    try:
        if work is not None:
            await asyncio.shield(work)  # with single-flight, others may be waiting for it too
        await _join(parts, joins, out, floor)
    except asyncio.CancelledError:
        if work is not None and sf is None:
            work.cancel()  # nobody else waits for it
        if not deadline.expired():
            raise  # the work goes on for the checks that joined it (as a cancelled check()'s does)
        for m in (*asks, *joins):
            if out[m.indices[0]] is None:
                _fail(parts, m, out, "deadline passed")  # this caller's answer; the work settles joiners
    finally:
        deadline.cancel()


def _start(parts: ManyParts, asks: list[_Miss], out: list[Decision | None], floor: State | None) -> asyncio.Task[None]:
    """The batch's questions asked in a task of their own: a caller going away leaves joiners their answers."""
    work = asyncio.ensure_future(_ask(parts, asks, out, floor))

    def done(w: asyncio.Task[None]) -> None:
        if not w.cancelled():
            w.exception()  # retrieved: the caller may be gone (it re-raises through the shield otherwise)
        for m in asks:  # no leader future left unresolved: a joiner would wait for it forever
            if m.future is not None and not m.future.done():
                m.future.set_exception(Unavailable("the batch ended without an answer"))
                if parts.sf is not None and m.flight is not None:
                    parts.sf.release(m.flight, m.future)

    work.add_done_callback(done)
    return work


async def _ask(parts: ManyParts, asks: list[_Miss], out: list[Decision | None], floor: State | None) -> None:
    if parts.warmer is not None:
        parts.warmer.ensure_pushing()
    rest = asks
    stored = parts.stored
    l2 = stored.l2 if stored is not None else None
    if stored is not None and l2 is not None:
        looked = [m for m in asks if m.ck is not None]
        if looked:
            found = await stored.from_l2([m.ck for m in looked if m.ck is not None])
            for m, d in zip(looked, found, strict=True):
                if d is not None:
                    _settle(parts, m, out, d)  # an L2 hit is in L1 already
            rest = [m for m in asks if out[m.indices[0]] is None]
    size = parts.max_batch
    chunks = [rest[k : k + size] for k in range(0, len(rest), size)]
    if len(chunks) == 1:
        _deliver(parts, chunks[0], await _call(parts.flush, chunks[0]), out, floor)
    elif chunks:
        got = await asyncio.gather(*(_call(parts.flush, chunk) for chunk in chunks))
        for chunk, results in zip(chunks, got, strict=True):
            _deliver(parts, chunk, results, out, floor)


async def _join(parts: ManyParts, joins: list[_Miss], out: list[Decision | None], floor: State | None) -> None:
    for m in joins:
        assert m.shared is not None
        try:
            d = await asyncio.shield(m.shared)  # one caller's cancellation must not cancel the shared work
        except LeaderGone:  # the check() it joined was cancelled (its work stopped): ask it ourselves
            _deliver(parts, [m], await _call(parts.flush, [m]), out, floor)
            continue
        except Exception as exc:  # noqa: BLE001 - fail closed: the shared work failed, deny
            _settle(parts, m, out, exc)
        else:
            _settle(parts, m, out, d)


async def _call(flush: Flush, chunk: list[_Miss]) -> list[Decision | BaseException]:
    try:
        results = await flush([m.p for m in chunk])
    except Exception as exc:  # noqa: BLE001 - the call failed: every item of this chunk fails closed
        return [exc] * len(chunk)
    if len(results) != len(chunk):
        return [Unavailable(f"{len(results)} answers for {len(chunk)} checks")] * len(chunk)
    return results


def _deliver(
    parts: ManyParts,
    chunk: list[_Miss],
    results: list[Decision | BaseException],
    out: list[Decision | None],
    floor: State | None,
) -> None:
    """Each service answer checked and kept as ``PolicyClient._fill`` does."""
    stored = parts.stored
    # A batch's answers come from one state: check it (and learn it) once per distinct state.
    last: tuple[int | None, int | None] = (None, None)
    keep_at: State | None = None
    for m, d in zip(chunk, results, strict=True):
        if isinstance(d, BaseException) or d.error is not None:
            _settle(parts, m, out, d)  # a bad question is answered as such, never cached
            continue
        if (d.revision, d.entities_version) != last:
            state = d.state
            assert state is not None
            if not state.covers(floor):
                stale = f"the service answered from revision {state.revision}, older than one already seen"
                _settle(parts, m, out, Unavailable(stale))
                continue
            last, keep_at = (d.revision, d.entities_version), state.join(floor)
            parts.tracker.learn(keep_at)
            if stored is not None and stored.l2 is not None:
                stored.l2.trusted = True
        assert keep_at is not None
        if stored is not None:
            stored.put(m.rkey, d, keep_at)
        if m.future is None and len(m.indices) == 1:
            out[m.indices[0]] = d  # nobody joined it: _settle's work is this
        else:
            _settle(parts, m, out, d)


def _settle(parts: ManyParts, m: _Miss, out: list[Decision | None], got: Decision | BaseException) -> None:
    """``m``'s answer (an exception: its fallback) to every item that asked it, and to its joiners."""
    if m.future is not None and not m.future.done():
        if isinstance(got, BaseException):
            m.future.set_exception(got)  # each joiner falls back on its own (check() does so)
        else:
            m.future.set_result(got)
        if parts.sf is not None and m.flight is not None:
            parts.sf.release(m.flight, m.future)
    if isinstance(got, BaseException):
        _fail(parts, m, out, str(got) or type(got).__name__)
        return
    for i in m.indices:
        out[i] = got


def _fail(parts: ManyParts, m: _Miss, out: list[Decision | None], detail: str) -> None:
    """``m``'s fallback to every item that asked it (a stale entry under stale_if_error, else a deny)."""
    got = parts.stored.fallback(m.ck, detail) if parts.stored is not None else DecisionStore.deny(detail)
    for i in m.indices:
        out[i] = got
