"""Staged warming: answers for a policy version before it is activated, so an activation is no cache cliff.

The policy service announces a version as *staged* (``policy_staged``) before it activates it (it
then waits ``policy_warm_window``), and when an upload is not activated. On that, :meth:`Stager.staged`
asks up to ``WarmConfig.stage_keys`` questions — this process's hot set first, then what L1 holds
at the current state — of that version (``options.meshauth_staged_version``, ``policy/staged.py``):
L2 first (another replica may have asked), then the service, one batch at a time (never more than
one call in flight per client: warming must not swamp the service), for at most ``stage_budget``.

What a staged answer may be used for, exactly: the service says, per answer, the version, the
revision it was evaluated on (``staged_on``: its schema, attribute precedence) and the entities
version. It is kept under that triple, never under a revision number. The activation announcement
(``policy_activated``) says which version revision ``r`` activated on ``r - 1`` with which entities
version; only a set kept under ``(version, r - 1, entities_version)`` is put into L1 under ``r``
(:meth:`Stager.activated`). Anything else — another version activated meanwhile, a re-activation, an
entity write between staging and activation, a schema change, two admins racing — finds no set,
and the activation is cold (the reactive warming of ``_warming.py`` then applies), never wrong.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

import msgspec
from redis.exceptions import RedisError

from meshauth import wire
from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._call import Caller
from meshauth.client._config import CacheConfig, WarmConfig
from meshauth.client._hot import HotKeys
from meshauth.client._keys import STAGED_REVISION, L1Key, staged_key
from meshauth.client._metrics import WARMED
from meshauth.client._models import Decision, State
from meshauth.client._request import from_key
from meshauth.client._tracking import StateTracker

__all__ = ["Stager"]

log = logging.getLogger(__name__)

StagedAt = tuple[int, int, int]  # (version, revision evaluated on, entities version)
Answers = dict[bytes, tuple[Decision, float]]  # question → (answer, fresh until)
KEEP_SETS = 2  # staged sets kept (racing admins stage two versions at once)
KEEP_QUEUED = 2
# Staged answers put into L1 in one go at the activation (the hottest); the rest follow in chunks of
# this many, a loop turn apart: 10,000 at once stalled the checks for ~10 ms (measured).
PROMOTE_AT_ONCE = 1024
_decode = msgspec.json.Decoder(wire.EvaluationsResponse).decode
Alike = dict[tuple[StagedAt, bool, tuple[str, ...], tuple[str, ...]], Decision]


class Stager:
    def __init__(
        self,
        store: str,
        config: WarmConfig,
        cache: CacheConfig,
        l1: DecisionL1,
        l2: DecisionL2 | None,
        caller: Caller,
        hot: HotKeys,
        tracker: StateTracker,
    ) -> None:
        self._store = store
        self._cfg = config
        self._cache = cache
        self._l1 = l1
        self._l2 = l2
        self._caller = caller
        self._hot = hot
        self._tracker = tracker
        self._sets: collections.OrderedDict[StagedAt, Answers] = collections.OrderedDict()
        self._queued: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._promoting: asyncio.Task[None] | None = None
        self._warming: int | None = None  # the version being asked now
        self.asked = 0  # staged answers had from the service (tests, the benchmark)
        self._closed = False  # a follower may outlive the client: nothing is started after aclose

    def staged(self, version: int) -> None:
        """``version`` was announced as staged: warm for it (after the one under way, if any)."""
        if self._closed or version in self._queued or version == self._warming:
            return
        self._queued = [*self._queued, version][-KEEP_QUEUED:]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def activated(self, state: State, version: int) -> bool:
        """Revision ``state.revision`` is ``version`` activated on the revision before, at
        ``state.entities_version``: put the answers staged for exactly that into L1 at ``state``.
        Whether there were any (else the activation is cold, as without staging)."""
        assert state.entities_version is not None
        if self._closed:
            return False
        if version == self._warming:
            self._warming = None  # too late for more: the loop stops after its batch
        found = self._sets.pop((version, state.revision - 1, state.entities_version), None)
        if not found:
            return False
        seen = self._tracker.seen
        if seen is not None and seen.join(state) != state:
            # Already past it in some part (an answer came first, or an entity write announced the
            # revision before this one): the client would move past ``state`` at once, so promoting at
            # it would only empty L1 of what it holds. Cold, as without staging.
            return False
        at = (state.revision, state.entities_version)
        # The client moves to ``state`` now: entries at older states can never answer again, and in
        # a full L1 they would make room by evicting the promoted ones (measured: half of them lost).
        self._l1.keep_only(*at)
        # Hottest first, leaving a tenth of L1 free: in a full L1 the first misses would evict the
        # oldest unmarked entries — the hottest promoted ones, not hit yet (measured: 0.63 vs 0.84).
        room = self._l1.maxsize - self._l1.maxsize // 10 - len(self._l1)
        items = list(found.items())[: max(0, room)]
        self._put(at, items[:PROMOTE_AT_ONCE])
        self._tracker.advance(state)
        self.cancel_promotion()
        if len(items) > PROMOTE_AT_ONCE:  # the colder rest soon after, without stalling the loop
            self._promoting = asyncio.get_running_loop().create_task(self._put_rest(at, items[PROMOTE_AT_ONCE:]))
        return True

    def cancel_promotion(self) -> None:
        """Stop putting the rest of a promotion into L1 (a newer one started, or L1 was just emptied
        because a change may have been missed: nothing older may come back into it)."""
        if self._promoting is not None:
            self._promoting.cancel()
            self._promoting = None

    def _put(self, at: tuple[int, int], items: list[tuple[bytes, tuple[Decision, float]]]) -> None:
        for rkey, (d, fresh_until) in items:
            if d.revision == at[0] and d.entities_version == at[1]:  # as made by ``_promotable``: always
                key: L1Key = (*at, rkey)
                self._l1.put(key, d, fresh_until)
        WARMED.add_many(len(items), "staged")

    async def _put_rest(self, at: tuple[int, int], items: list[tuple[bytes, tuple[Decision, float]]]) -> None:
        for i in range(0, len(items), PROMOTE_AT_ONCE):
            await asyncio.sleep(0)  # a turn of the loop for the checks between chunks
            self._put(at, items[i : i + PROMOTE_AT_ONCE])

    async def _run(self) -> None:
        while self._queued:
            version, *self._queued = self._queued
            self._warming = version
            try:
                await self._warm(version)
            except Exception:  # warming is an optimisation: never more than a cold activation
                log.warning("staged warming of store %r for version %s failed", self._store, version, exc_info=True)
            finally:
                self._warming = None

    def _questions(self, seen: State | None) -> list[bytes]:
        n = min(self._cfg.stage_keys, self._l1.maxsize - self._l1.maxsize // 10)  # more would not be kept
        rkeys = dict.fromkeys(self._hot.hottest(min(n, self._cfg.hot_keys)))
        if seen is not None and len(rkeys) < n:
            rkeys.update(dict.fromkeys(self._l1.keys_at(seen.revision, seen.entities_version, n)))
        return list(rkeys)[:n]

    async def _warm(self, version: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.stage_budget
        seen = self._tracker.seen
        rkeys = self._questions(seen)
        guess: StagedAt | None = None  # where the service will say it staged: where L2 may hold answers
        if seen is not None and seen.entities_version is not None:
            guess = (version, seen.revision, seen.entities_version)
            have = self._sets.get(guess, {})
            rkeys = [k for k in rkeys if k not in have]
        size = self._cfg.stage_batch
        for i in range(0, len(rkeys), size):
            left = deadline - loop.time()
            if left <= 0 or self._warming != version:
                return  # the rest is asked at first use, as without staging
            # L2 chunk by chunk too: 10,000 keys hashed and read at once stalled checks for ~10 ms.
            chunk = rkeys[i : i + size]
            if guess is not None:
                in_l2 = await self._from_l2(guess, chunk, left)
                chunk = [k for k in chunk if k not in in_l2]
            if chunk and not await self._ask(version, chunk, deadline - loop.time()):
                return

    async def _from_l2(self, at: StagedAt, rkeys: list[bytes], budget: float) -> set[bytes]:
        if self._l2 is None or not rkeys or budget <= 0:
            return set()
        keys = [staged_key(*at, k) for k in rkeys]
        found = {k: got for k, got in zip(rkeys, await self._l2.get_many(keys, budget=budget), strict=True) if got}
        if found:
            alike: Alike = {}
            self._keep(at, {k: (_promotable(alike, at, d), exp) for k, (d, exp) in found.items()})
        WARMED.add_many(len(found), "staged_l2")
        return set(found)

    async def _ask(self, version: int, rkeys: list[bytes], budget: float) -> bool:
        """One batch; False when asking more is pointless (refused, failed, or the answers unusable)."""
        asks = [(k, p) for k in rkeys if (p := from_key(self._store, k, 0.0)) is not None]
        if not asks:
            return True
        request = wire.EvaluationsRequest(
            evaluations=[wire.EvaluationItem(p.subject, wire.Action(p.action), p.resource, p.context) for _, p in asks],
            options=wire.EvaluationsOptions(meshauth_staged_version=version),
        )
        try:
            resp = await self._caller.post(wire.encode(request), budget)
            if resp.status != 200:
                return False  # unknown version, the store changing, overloaded: nothing staged
            items = _decode(resp.body).evaluations
        except Exception:  # noqa: BLE001 - transport, timeout, garbage: nothing staged, checks go on as ever
            return False
        if len(items) != len(asks):
            return False
        got: dict[StagedAt, Answers] = {}
        alike: Alike = {}
        now = self._l1.clock()
        for (rkey, _), item in zip(asks, items, strict=True):
            at = _staged_at(item, version)
            if at is None:
                continue
            ctx = item.context
            d = _promotable(
                alike, at, Decision(decision=item.decision, reasons=tuple(ctx.policies), errors=tuple(ctx.errors))
            )
            got.setdefault(at, {})[rkey] = (d, now + (self._cache.ttl if d.decision else self._cache.deny_ttl))
        for at, answers in got.items():
            self._keep(at, answers)
            self.asked += len(answers)
            WARMED.add_many(len(answers), "staged_service")
            await self._to_l2(at, answers)
        return bool(got)

    def _keep(self, at: StagedAt, answers: Answers) -> None:
        if at[0] != self._warming:
            return  # came after the activation took the set (or another version's warming began)
        self._sets.setdefault(at, {}).update(answers)
        self._sets.move_to_end(at)
        while len(self._sets) > KEEP_SETS:
            self._sets.popitem(last=False)

    async def _to_l2(self, at: StagedAt, answers: Answers) -> None:
        if self._l2 is None:
            return
        now = self._l1.clock()
        entries = [
            (staged_key(*at, k), msgspec.structs.replace(d, revision=STAGED_REVISION), exp - now)
            for k, (d, exp) in answers.items()
            if exp > now
        ]
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._l2.put_many(entries)

    async def aclose(self) -> None:
        self._closed = True
        for task in (self._task, self._promoting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def _staged_at(item: wire.Decision, version: int) -> StagedAt | None:
    """Where a staged answer was made, if it is one for ``version`` (anything else is not kept)."""
    ctx = item.context
    if not isinstance(ctx.error, msgspec.UnsetType) or ctx.revision != STAGED_REVISION:
        return None
    on, ev = ctx.staged_on, ctx.entities_version
    if ctx.staged_version != version or type(on) is not int or type(ev) is not int or on < 0:
        return None
    return version, on, ev


def _promotable(alike: Alike, at: StagedAt, d: Decision) -> Decision:
    """``d`` as L1 will hold it if it is ever used: at revision ``on + 1`` — the only revision it
    can be used at (:meth:`Stager.activated`) — and that entities version. Made now, and alike
    answers shared, so the activation allocates nothing per answer: 10,000 new objects at once set
    off a full garbage collection in the middle of the checks (measured: a 44 ms p99 stall)."""
    key = (at, d.decision, d.reasons, d.errors)
    found = alike.get(key)
    if found is None:
        found = alike[key] = msgspec.structs.replace(d, revision=at[1] + 1, entities_version=at[2], source="l1")
    return found
