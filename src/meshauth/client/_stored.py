"""Where decisions are kept and found again: both cache levels behind one object, and the fallback
when the service cannot answer.

An answer is kept under the state it stands for, in L1 at once and in L2 by a background write (a
check never waits for Redis to store). L2 works per batch, never per check: the L2 misses of a batch
are looked up with one ``MGET`` (:meth:`DecisionStore.from_l2`, called by the batcher's flush), and
fills are buffered and written with one round trip (one ``EVALSHA``) at most every ``WRITE_DELAY``
seconds (at most ``WRITE_BUFFER`` waiting, the rest dropped: a write is an optimisation and must not
queue without bound while Redis is slow). Per check, a ``GET`` and a ``SET`` cost ~180 µs of CPU in
redis-py — more than the rest of a cold check (docs/performance.md, "Authz mode"); a write per loop
turn was still one round trip per batch of ~4 cold checks, ~100 µs of the gate's CPU on the core it
shares with Valkey and the policy service, so fills now wait up to ``WRITE_DELAY`` and go out
together (another replica may miss them in L2 for those few ms and ask the service, which answers
the same). Allows live ``ttl``, denies ``deny_ttl``. The fallback is a
cached decision expired less than ``stale_if_error`` ago, for exactly that question at that state
(default off), else a deny with reason ``policy_unavailable`` — never an allow.

L2 reads back off while they never hit: after ``READ_PROBE`` looked-up keys in a row without a hit,
only one batch in ``READ_SKIP`` reads L2 (the others go straight to the service, counted as
``cache{level="l2",result="skipped"}``) until a read hits again. A gate whose questions are all new (the
cold benchmark: no L2 hit is possible) paid an ``MGET`` round trip per batch for nothing — a Valkey
wake-up and a reply event on the core it shares with Valkey and the policy service (docs/performance.md,
"Stop 19, branch ``cold2``"); a skipped read costs only that batch's chance of an L2 hit.

Fills back off with the reads: while reads are backed off, one answer in ``READ_SKIP`` is written to
L2 (the others counted as ``cache{level="l2",result="write_skipped"}``; L1 keeps every one). A replica
that found none of its last ``READ_PROBE`` questions in L2 is asked questions nobody asks twice within
their TTL, so the others are unlikely to ask its answers either; and when questions do start to repeat
across replicas, the fills still written and the reads still made find one another (a repeat is found
with probability 1/``READ_SKIP``² each time), the first hit restores every read and every fill. On the
cold benchmark L2 cost ~23 µs of the shared core per request (~8 %: the same run without L2); backing
the fills off took Valkey's share from 14–15 to 7–9 µs, the gate's saving stayed within the rounds'
noise (docs/performance.md, "Stop 23, end of stop").

Backed off, L2 is also asked less often: a read at most once per ``BACKED_OFF_GAP`` (and still only
one batch in ``READ_SKIP``), and the fills still written wait ``BACKED_OFF_GAP`` for company instead of
``WRITE_DELAY``. The fill sampling cut what each write carries, not how many there were: one round
trip per ``WRITE_DELAY`` (~200 a second) and a read per ``READ_SKIP`` batches (~110 a second at 3,000
cold checks a second) — each a Valkey wake-up, a reply and a loopback send that cost this machine
~20–40 µs of CPU apiece. Spaced, they are ~20 a second each; the gate's own instructions per cold
check fell by ~20k of ~324k (bench/adhoc/stop24/gate_instr.py; docs/performance.md, "Stop 24").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._config import CacheConfig
from meshauth.client._keys import L1Key
from meshauth.client._metrics import CACHE, FALLBACKS
from meshauth.client._models import Decision, State, unavailable
from meshauth.client._request import Pending

__all__ = ["BACKED_OFF_GAP", "READ_PROBE", "READ_SKIP", "WRITE_BUFFER", "WRITE_DELAY", "DecisionStore"]

_STALE_SOURCE = "stale"
WRITE_BUFFER = 4096  # L2 fills waiting for the write in flight; beyond it they are dropped
WRITE_DELAY = 0.005  # seconds a fill may wait for others to share its round trip
READ_PROBE = 1024  # keys looked up in L2 in a row without a hit before reads back off
READ_SKIP = 8  # while backed off, one batch in this many reads L2
BACKED_OFF_GAP = 0.05  # seconds: while backed off, at most one L2 read per gap, and fills wait this long


class DecisionStore:
    def __init__(self, l1: DecisionL1 | None, l2: DecisionL2 | None, config: CacheConfig) -> None:
        self._l1 = l1
        self._l2 = l2
        self._cfg = config
        self._writes: list[tuple[L1Key, Decision, float]] = []
        self._writer: asyncio.Task[None] | None = None  # at most one write in flight
        self._write_soon: asyncio.TimerHandle | None = None
        self._dry = 0  # keys looked up in L2 since its last hit
        self._skips = 0
        self._fills = 0  # answers offered to L2 while backed off
        self._probed = -float("inf")  # loop time of the last read while backed off

    @property
    def l2(self) -> DecisionL2 | None:
        return self._l2

    async def from_l2(self, keys: list[L1Key]) -> list[Decision | None]:
        """Each key's L2 hit (also put into L1 for what remains of its life) or None, in one ``MGET``."""
        assert self._l2 is not None
        out: list[Decision | None] = []
        for key, got in zip(keys, await self._l2.get_many(keys), strict=True):
            if got is None:
                CACHE.add("l2", "miss")
                out.append(None)
                continue
            d, expires_at = got
            CACHE.add("l2", "hit")
            if self._l1 is not None:
                self._l1.put(key, msgspec.structs.replace(d, source="l1"), expires_at)
            out.append(d)
        return out

    async def through_l2(
        self, items: list[Pending], call: Callable[[list[Pending]], Awaitable[list[Decision | BaseException]]]
    ) -> list[Decision | BaseException]:
        """A batch's answers: those L2 holds (one ``MGET`` for every item with an ``l2_key``), the
        rest from ``call`` (one call to the service)."""
        keys = [p.l2_key for p in items if p.l2_key is not None]
        if self._l2 is None or not keys:
            return await call(items)
        if self._dry >= READ_PROBE:
            self._skips += 1
            now = asyncio.get_running_loop().time()
            if self._skips % READ_SKIP or now - self._probed < BACKED_OFF_GAP:
                CACHE.add_many(len(keys), "l2", "skipped")
                return await call(items)
            self._probed = now
        found = await self.from_l2(keys)
        self._dry = self._dry + len(keys) if all(d is None for d in found) else 0
        hits = iter(found)
        out: list[Decision | BaseException | None] = [None if p.l2_key is None else next(hits) for p in items]
        rest = [i for i, d in enumerate(out) if d is None]
        if rest:
            for i, answer in zip(rest, await call([items[i] for i in rest]), strict=True):
                out[i] = answer
        return [d for d in out if d is not None]

    def put(self, rkey: bytes, d: Decision, state: State) -> None:
        ttl = self._cfg.ttl if d.decision else self._cfg.deny_ttl
        key: L1Key = (state.revision, state.entities_version, rkey)
        if self._l1 is not None:
            self._l1.put(key, msgspec.structs.replace(d, source="l1"), self._l1.clock() + ttl)
        if self._l2 is not None:
            if self._dry >= READ_PROBE:
                self._fills += 1
                if self._fills % READ_SKIP:
                    CACHE.add("l2", "write_skipped")
                    return
            if len(self._writes) >= WRITE_BUFFER:
                CACHE.add("l2", "write_dropped")
                return
            self._writes.append((key, d, ttl))
            if self._writer is None and self._write_soon is None:
                # Every answer delivered within WRITE_DELAY (several batches under load) joins this write.
                self._write_soon = asyncio.get_running_loop().call_later(self._write_delay(), self._write)

    def _write(self) -> None:
        self._write_soon = None
        if self._writer is not None or not self._writes or self._l2 is None:
            return
        entries, self._writes = self._writes, []
        self._writer = asyncio.get_running_loop().create_task(self._l2.put_many(entries))
        self._writer.add_done_callback(self._written)

    def _written(self, _task: asyncio.Task[None]) -> None:
        self._writer = None
        if self._writes and self._write_soon is None:  # what queued meanwhile goes next, as one write
            self._write_soon = asyncio.get_running_loop().call_later(self._write_delay(), self._write)

    def _write_delay(self) -> float:
        return BACKED_OFF_GAP if self._dry >= READ_PROBE else WRITE_DELAY

    def fallback(self, key: L1Key | None, detail: str) -> Decision:
        if key is not None and self._l1 is not None and self._cfg.stale_if_error > 0:
            stale = self._l1.get_stale(key)
            if stale is not None:
                FALLBACKS.add("stale")
                return msgspec.structs.replace(stale, source=_STALE_SOURCE)
        return self.deny(detail)

    @staticmethod
    def deny(detail: str) -> Decision:
        FALLBACKS.add("deny")
        return unavailable(detail)

    async def aclose(self) -> None:
        """Write what is buffered and wait for it (bounded by the L2 timeout of each write)."""
        if self._write_soon is not None:
            self._write_soon.cancel()
            self._write_soon = None
        while self._writer is not None or self._writes:
            if self._writer is None:
                self._write()
            if self._writer is not None:
                await asyncio.gather(self._writer, return_exceptions=True)
                await asyncio.sleep(0)  # let its done callback run
        if self._l2 is not None:
            await self._l2.aclose()
