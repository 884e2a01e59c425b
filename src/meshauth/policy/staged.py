"""Evaluation against a staged version: an uploaded version that is not active, for the client's
warmer (``meshauth.client``, ``_staging.py``), so every replica can hold answers for a version
before an activation makes it serve (no cache cliff at the activation).

Asked with ``options.meshauth_staged_version`` on ``…/evaluations``. The version is compiled (once,
shared with the upload's compile when it is still alive) under the schema of the state this worker
serves, and evaluated with that state's entities and attribute precedence. So the answer is exactly
what the store will answer once *this* version is activated on top of *that* revision with *those*
entities: each answer says ``staged_version`` (the version), ``staged_on`` (the revision) and
``entities_version``, and ``revision`` -1, which names no state that is or was active. An
activation bumps nothing but the revision and the active version (``stores.activated``), so the
client may use a staged answer for revision ``staged_on + 1`` only when that revision is announced
as this version's activation with the same ``entities_version`` — anything else is cold, as without
staging. A normal evaluation never reaches this module.

Refused with a clear 400 (never an answer from another version): a version the store does not have
(another store's, a deleted one), one that cannot be served under the current schema, and this
worker's state not matching the database's (the schema may have changed: the client retries later).

Paced (429, ``Retry-After``): whoever may ask for a decision may ask for any uploaded version, and a
compile costs what an upload's does (100,000 policies: ~20 s of a core). So staged compiles draw on a
budget of compile time (:class:`CompileBudget`: it refills at a tenth of a second per second, up to
two seconds): a caller cycling through versions holds a worker at most ~10 % busy compiling, and a
small store's compiles (milliseconds) never meet the bound. A refused warmer starts cold, as without
staging.

Bounded otherwise too: at most ``AT_ONCE`` staged batches are evaluated at a time per worker (the
warmers of many replicas queue, so real checks interleave between their batches) and ``QUEUED`` wait
(beyond: 429 ``staged_busy``); compiled versions are kept for the revision the worker serves only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth import wire
from meshauth.http import ApiError
from meshauth.policy import stores
from meshauth.policy.compiled_texts import CompiledTexts
from meshauth.policy.servable import Unservable
from meshauth.policy.state import CompiledText, StoreState

__all__ = ["STAGED_REVISION", "CompileBudget", "StagedVersions", "label"]

STAGED_REVISION = -1
# Compiled staged versions kept alive (the compiled-text map holds them weakly): a warm phase asks
# for one version, racing admins for a few.
KEEP = 4
AT_ONCE = 2  # staged batches evaluated at a time, per worker
QUEUED = 64  # staged batches waiting for their turn, per worker; more are refused


class CompileBudget:
    """Seconds of staged compiling this worker may spend: refilled at ``duty`` per second, up to
    ``burst``. A compile may start while the balance is positive and is charged what it took, so one
    long compile is paid for by a long pause after it."""

    def __init__(self, *, duty: float = 0.1, burst: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._duty = duty
        self._burst = burst
        self.clock = clock
        self._balance = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._balance = min(self._burst, self._balance + (now - self._at) * self._duty)
        self._at = now

    def wait(self) -> float:
        """Seconds until a compile may start (0: now)."""
        self._refill()
        return 0.0 if self._balance > 0 else -self._balance / self._duty + 1e-3

    def charge(self, seconds: float) -> None:
        self._refill()
        self._balance -= seconds


class StagedVersions:
    def __init__(self, engine: AsyncEngine, texts: CompiledTexts, budget: CompileBudget | None = None) -> None:
        self._engine = engine
        self._texts = texts
        self.budget = budget or CompileBudget()
        self._kept: collections.OrderedDict[tuple[str, int, int], CompiledText] = collections.OrderedDict()
        self._lock = asyncio.Lock()  # one compile at a time: the warmers must not swamp the worker
        self._turns = asyncio.Semaphore(AT_ONCE)
        self._waiting = 0

    @property
    def kept(self) -> list[tuple[str, int, int]]:
        """(store, version, revision) of the compiled staged versions held, oldest first."""
        return list(self._kept)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One staged batch's turn (``AT_ONCE`` at a time), or a 429 when ``QUEUED`` already wait."""
        if self._waiting >= QUEUED:
            raise ApiError(429, "staged_busy", "too many staged evaluations waiting", headers={"retry-after": "1"})
        self._waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._turns.release()

    async def state(self, active: StoreState, version: int) -> StoreState:
        """``active`` with ``version``'s policies in place of its own, or a 400."""
        key = (active.name, version, active.revision)
        compiled = self._kept.get(key)
        if compiled is None:
            # Versions compiled at an earlier revision of this store can never be asked again (the
            # revision only grows): let them go rather than hold their memory.
            for old in [k for k in self._kept if k[0] == active.name and k[2] != active.revision]:
                del self._kept[old]
            async with self._lock:
                compiled = self._kept.get(key) or await self._compile(active, version)
            self._kept[key] = compiled
            while len(self._kept) > KEEP:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        return StoreState(
            name=active.name,
            revision=active.revision,
            active_version=version,
            compiled=compiled,
            entities_version=active.entities_version,
            attribute_precedence=active.attribute_precedence,
        )

    async def _compile(self, active: StoreState, version: int) -> CompiledText:
        self._paced()  # before anything is read: a refused caller costs no database read either
        async with self._engine.connect() as conn:
            row = await stores.get(conn, active.name)
            text = await stores.version_text(conn, active.name, version)
        if row is None or text is None:
            raise _refused(f"store {active.name!r} has no policy version {version}")
        if row.revision != active.revision or row.attribute_precedence != active.attribute_precedence:
            # This worker is behind (or ahead of) the database: the schema it would compile under
            # may not be the revision's. Refuse rather than label an answer with the wrong revision.
            raise _refused(f"store {active.name!r} is changing (revision {row.revision}); ask again")
        compiles, started = self._texts.compiles, self.budget.clock()
        try:
            return await self._texts.get(text, row.schema_text, row.schema_format)
        except Unservable as exc:
            raise _refused(f"policy version {version} cannot be served: {exc}") from None
        finally:
            if self._texts.compiles != compiles or self.budget.clock() - started > 0.01:
                # compiled here (a compiled text already held, or shared with an upload, costs nothing)
                self.budget.charge(self.budget.clock() - started)

    def _paced(self) -> None:
        wait = self.budget.wait()
        if wait > 0:
            seconds = math.ceil(wait)
            raise ApiError(
                429,
                "staged_compile_paced",
                f"staged versions are compiled at most a tenth of the time on this worker; ask again in {seconds} s",
                headers={"retry-after": str(seconds)},
            )


def _refused(description: str) -> ApiError:
    return ApiError(400, "invalid_staged_version", description)


def label(decisions: Sequence[wire.Decision], state: StoreState) -> list[wire.Decision]:
    """The staged state's answers, labelled as staged (new objects: the evaluator shares answers)."""
    assert state.active_version is not None
    labelled: dict[int, wire.Decision] = {}
    out = []
    for d in decisions:
        found = labelled.get(id(d))
        if found is None:
            ctx = msgspec.structs.replace(
                d.context,
                revision=STAGED_REVISION,
                staged_version=state.active_version,
                staged_on=state.revision,
                entities_version=state.entities_version,
            )
            found = labelled[id(d)] = wire.Decision(d.decision, ctx)
        out.append(found)
    return out
