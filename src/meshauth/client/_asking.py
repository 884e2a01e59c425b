"""A check's way past L1 (``PolicyClient``'s base): single-flight, the batcher, the call, and the
fail-closed fallback. Split from ``_client.py`` (which builds the parts and holds the public API).

The common miss — batched, not joining an identical check in flight — runs inline in :meth:`_ask`:
no coroutine below it and no timer of its own (the batcher fails its future at the deadline, one
timer per batch). Only a joiner, a check without a batcher, or one met by an open breaker takes
:meth:`_miss` (a ``Deadline`` of its own, ``Flights.do``). Before stop 21 every miss of a client with
single-flight on (the gate's) took that path — a timer, three coroutines and a task cancellation
scheme per check for a join that under cold load almost never comes (with the L1 and flight-key cuts
of the same stop, 19.5-21.2 → 10.8-11.7 µs of client CPU per micro-batched check with single-flight
and L1 on, in process: docs/performance.md, issue 10, "Stop 21, branch client4").
"""

from __future__ import annotations

import asyncio

from meshauth.batching import Batcher, DeadlinePassed
from meshauth.client._accept import accept
from meshauth.client._answers import outcome
from meshauth.client._call import Caller
from meshauth.client._flight import FlightKey, Flights, LeaderGone, flight_key
from meshauth.client._front import L1Front
from meshauth.client._keys import L1Key
from meshauth.client._metrics import CHECKS, SINGLEFLIGHT_JOINS
from meshauth.client._models import Consistency, Decision, State
from meshauth.client._request import Deadline, Pending
from meshauth.client._stored import DecisionStore
from meshauth.client._tracking import StateTracker
from meshauth.client._warming import Warmer

__all__ = ["Asking"]


class Asking:
    _batcher: Batcher[Pending, Decision] | None
    _caller: Caller
    _sf: Flights[FlightKey, Decision] | None
    _front: L1Front
    _stored: DecisionStore | None
    _tracker: StateTracker
    _warmer: Warmer | None

    async def _ask(self, p: Pending, rkey: bytes, consistency: Consistency) -> Decision:
        hit, floor, ck = self._front.lookup(rkey, consistency)  # inline, no coroutine: a warm gate ends here
        if hit is not None:
            return hit
        b, breaker, sf = self._batcher, self._caller.breaker, self._sf
        flight = flight_key(consistency.mode, floor, rkey) if sf is not None else None
        if b is None or (breaker is not None and breaker.rejecting()) or (sf is not None and flight in sf):
            d = await self._miss(p, consistency, floor, rkey, ck)
        else:
            # A batched miss led inline: no coroutine below this one and no timer of its own (the
            # batcher fails the future at the deadline: one timer per batch). With single-flight on,
            # identical checks arriving meanwhile join it (``_miss``: through a shield); if this
            # leader's deadline passes or it is cancelled they start over, as ``Flights.do``'s do.
            if self._warmer is not None:
                self._warmer.ensure_pushing()
            p.l2_key = ck
            shared = sf.lead(flight) if sf is not None and flight is not None else None
            try:
                d = accept(await b.enqueue(p, p.deadline), floor, rkey, self._stored, self._tracker)
            except DeadlinePassed:
                if shared is not None:
                    shared.set_exception(LeaderGone())
                d = self._fallback(ck, "deadline passed")
            except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt, SystemExit):
                if shared is not None:  # joiners start over rather than wait out their own deadlines
                    shared.set_exception(LeaderGone())
                raise
            except Exception as exc:  # noqa: BLE001 - fail closed: whatever went wrong, deny
                if shared is not None:
                    shared.set_exception(exc)
                d = self._fallback(ck, str(exc) or type(exc).__name__)
            else:
                if shared is not None:
                    shared.set_result(d)
            finally:
                if shared is not None and sf is not None and flight is not None:
                    sf.release(flight, shared)
        CHECKS.add(outcome(d), d.source)
        return d

    async def _miss(
        self, p: Pending, consistency: Consistency, floor: State | None, rkey: bytes, ck: L1Key | None
    ) -> Decision:
        breaker = self._caller.breaker
        if breaker is not None and breaker.rejecting():
            return self._fallback(ck, "circuit breaker open")
        deadline = Deadline(p.deadline)
        try:
            if self._sf is None:
                return await self._fill(p, ck, floor, rkey)
            flight = flight_key(consistency.mode, floor, rkey)
            if flight in self._sf:
                SINGLEFLIGHT_JOINS.add()
            return await self._sf.do(flight, lambda: self._fill(p, ck, floor, rkey))
        except asyncio.CancelledError:
            if deadline.expired():
                return self._fallback(ck, "deadline passed")
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: whatever went wrong, deny
            return self._fallback(ck, str(exc) or type(exc).__name__)
        finally:
            deadline.cancel()

    async def _fill(self, p: Pending, ck: L1Key | None, floor: State | None, rkey: bytes) -> Decision:
        if self._warmer is not None:
            self._warmer.ensure_pushing()
        p.l2_key = ck  # looked up in L2 with the rest of its batch (when there is an L2)
        if self._batcher is not None:
            d = await self._batcher.submit(p)
        elif isinstance(got := (await self._flush([p]))[0], BaseException):
            raise got
        else:
            d = got
        return accept(d, floor, rkey, self._stored, self._tracker)

    async def _flush(self, items: list[Pending]) -> list[Decision | BaseException]:
        """The batcher's flush: the batch's L2 lookups in one ``MGET``, the rest in one call."""
        return await (self._stored.through_l2(items, self._caller.flush) if self._stored else self._caller.flush(items))

    def _fallback(self, ck: L1Key | None, detail: str) -> Decision:
        if self._stored is not None:
            return self._stored.fallback(ck, detail)
        return DecisionStore.deny(detail)
