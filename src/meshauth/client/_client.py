"""``PolicyClient``: checks against the policy service's AuthZEN API, through (in this order)

1. **L1** (in process) — a hit answers at once;
2. **single-flight** — an identical check already in flight is joined, not repeated;
3. **L2** (Redis, shared by replicas) — a hit fills L1;
4. the **batcher** — concurrent misses go out as one ``evaluations`` call (a lone one as
   ``evaluation``, at once);
5. the **call**: circuit breaker, endpoint choice (power of two choices on outstanding calls),
   transport, retries within the retry budget and the caller's deadline.

Any failure — transport, timeout, breaker open, 5xx, a body that does not decode to exactly the
answers asked for — is a deny with reason ``policy_unavailable`` (or, only when ``stale_if_error``
is on, a recently expired cached decision for that exact question). Never an allow.

How the client knows the store's state *before* a call (the cache key needs it): every answer
carries the state it was made at (``revision``, and ``entities_version`` once the service reports
it); the client keeps the join of all states it has seen (``state``) and keys cache lookups by that
state. An answer is cached under the state it was made at, so when the client learns of a newer
state (from any answer, or from :meth:`PolicyClient.advance`, which an invalidation listener calls
with the state a policy activation or entity write announces), every entry made at an older state
is unreachable at once and simply ages out. Consequences: (a) the client never answers from a
state older than one it has seen — a service answer from an older state than required (a lagging
replica) is refused as unavailable; (b) while nothing announces a change, a cached decision can
outlive it by at most its TTL (``ttl`` for allows, the shorter ``deny_ttl`` for denies). Until the
service reports ``entities_version`` with each decision, entity changes are bounded only by the TTL
or by :meth:`PolicyClient.invalidate`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from meshauth import wire
from meshauth.batching import Batcher
from meshauth.client import _metrics as m
from meshauth.client._breaker import CircuitBreaker, StateName
from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._config import (
    DEFAULT_TIMEOUT,
    BatchConfig,
    BreakerConfig,
    CacheConfig,
    PoolConfig,
    RetryConfig,
)
from meshauth.client._keys import L1Key, request_key
from meshauth.client._models import (
    MINIMIZE_LATENCY,
    REASON_INVALID_REQUEST,
    Check,
    Consistency,
    Decision,
    State,
    unavailable,
)
from meshauth.client._retry import RetryBudget
from meshauth.client._transport import AiohttpTransport, Response, Transport
from meshauth.singleflight import SingleFlight

__all__ = ["PolicyClient", "Unavailable"]

_STORE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}\Z")
_STALE_SOURCE = "stale"


class Unavailable(Exception):
    """No decision could be had from the service (the reason is the message). Never leaves the
    client: :meth:`PolicyClient.check` turns it into a deny."""


class _Refused(Exception):
    """The service answered, deliberately, with a refusal that is not about one item (401, 404 …):
    not a sign of ill health, so not a breaker failure, and not worth a retry."""


class _Pending(msgspec.Struct, gc=False):
    subject: wire.Subject
    action: str
    resource: wire.Resource
    context: dict[str, Any] | None
    deadline: float  # event-loop time


def _entity(value: object, cls: type[wire.Subject] | type[wire.Resource], name: str) -> Any:
    if isinstance(value, cls):
        out: Any = value
    elif isinstance(value, Mapping):
        try:
            out = msgspec.convert(dict(value), cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{name}: {exc}") from None
    else:
        raise TypeError(f"{name} must be a {cls.__name__} or a mapping with 'type' and 'id'")
    if not out.type or not out.id:
        raise ValueError(f"{name}: type and id must be non-empty")
    return out


def _item_decision(d: wire.Decision) -> Decision:
    ctx = d.context
    ev = None if isinstance(ctx.entities_version, msgspec.UnsetType) else ctx.entities_version
    if not isinstance(ctx.error, msgspec.UnsetType):
        # The service could not evaluate this item: the question was bad. Deny, whatever it said.
        errors = tuple(ctx.errors) or (ctx.error.message,)
        return Decision(
            decision=False,
            reasons=(REASON_INVALID_REQUEST,),
            errors=errors,
            revision=ctx.revision,
            entities_version=ev,
            error=REASON_INVALID_REQUEST,
        )
    return Decision(
        decision=d.decision,
        reasons=tuple(ctx.policies),
        errors=tuple(ctx.errors),
        revision=ctx.revision,
        entities_version=ev,
    )


def _invalid(detail: str) -> Decision:
    return Decision(decision=False, reasons=(REASON_INVALID_REQUEST,), errors=(detail,), error=REASON_INVALID_REQUEST)


def _error_text(body: bytes) -> str:
    try:
        doc = msgspec.json.decode(body[:4096])
    except msgspec.DecodeError:
        return "the service refused the request"
    if isinstance(doc, dict):
        return str(doc.get("error_description") or doc.get("error") or "the service refused the request")[:512]
    return "the service refused the request"


class PolicyClient:
    """An asyncio client for the meshauth policy service (AuthZEN 1.0 decision API).

    ``urls``: base URLs of policy service replicas (one inside a mesh). ``store``: the policy store
    asked. ``token``: sent as ``Authorization: Bearer`` when the decision API is protected.
    ``timeout``: the default deadline of a check, in seconds. Every other keyword configures one
    feature, and ``None`` switches it off. ``redis`` enables the L2 cache (with ``cache`` on).
    ``transport`` replaces the aiohttp pool (tests, other protocols); ``clock`` drives the breaker.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        store: str = "default",
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        batching: BatchConfig | None = BatchConfig(),
        singleflight: bool = True,
        cache: CacheConfig | None = CacheConfig(),
        redis: Redis | None = None,
        breaker: BreakerConfig | None = BreakerConfig(),
        retry: RetryConfig | None = RetryConfig(),
        pool: PoolConfig | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(urls, str) or not urls:
            raise ValueError("urls must be a non-empty list of http:// or https:// base URLs")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"urls: {url!r} is not an http:// or https:// URL")
        if not isinstance(store, str) or not _STORE.match(store):
            raise ValueError("store must be 1-64 of A-Z a-z 0-9 _ . -, starting alphanumeric")
        if token is not None and not (isinstance(token, str) and _TOKEN.match(token)):
            raise ValueError("token must be 1-512 visible ASCII characters")
        if not (isinstance(timeout, int | float) and 0 < timeout < float("inf")):
            raise ValueError("timeout must be a finite number of seconds > 0")
        self._urls = [u.rstrip("/") for u in urls]
        self._outstanding = dict.fromkeys(self._urls, 0)
        self.store = store
        self._timeout = float(timeout)
        base = f"/stores/{store}/access/v1/"
        self._paths = {"evaluation": base + "evaluation", "evaluations": base + "evaluations"}
        self._headers = {"content-type": "application/json"}
        if token is not None:
            self._headers["authorization"] = f"Bearer {token}"
        self._own_transport = transport is None
        self._transport: Transport = transport if transport is not None else AiohttpTransport(pool)
        self._wall = wall_clock
        self._batcher: Batcher[_Pending, Decision] | None = (
            Batcher(self._flush, max_batch=batching.max_batch, max_wait=batching.max_wait) if batching else None
        )
        self._sf: SingleFlight[tuple[str, State | None, bytes], Decision] | None = (
            SingleFlight() if singleflight else None
        )
        self._cache = cache
        self._l1 = (
            DecisionL1(maxsize=cache.l1_size, stale_for=cache.stale_if_error, clock=wall_clock) if cache else None
        )
        self._l2 = (
            DecisionL2(redis, prefix=cache.l2_prefix, timeout=cache.l2_timeout, clock=wall_clock)
            if cache and redis is not None
            else None
        )
        self._breaker = CircuitBreaker(breaker, clock=clock, on_transition=self._transition) if breaker else None
        self._budget = RetryBudget(retry) if retry else None
        self._seen: State | None = None
        self._background: set[asyncio.Task[None]] = set()
        m.BREAKER_STATE.labels(store).set(0)

    # -- public -----------------------------------------------------------------------------

    @property
    def state(self) -> State | None:
        """The newest store state this client has seen (None before the first answer)."""
        return self._seen

    @property
    def breaker_state(self) -> StateName:
        return self._breaker.state if self._breaker else "closed"

    def advance(self, state: State) -> None:
        """Learn of a newer store state (e.g. from an invalidation message): from now on no cache
        entry made at an older state answers, and no answer from an older state is accepted."""
        self._seen = state.join(self._seen)

    def invalidate(self) -> None:
        """Drop every L1 entry (for a change the state does not capture)."""
        if self._l1 is not None:
            self._l1.clear()

    async def check(
        self,
        subject: wire.Subject | Mapping[str, Any],
        action: str,
        resource: wire.Resource | Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        consistency: Consistency = MINIMIZE_LATENCY,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline travels into shared batch calls
    ) -> Decision:
        """Is ``subject`` allowed to ``action`` on ``resource``? Always returns a :class:`Decision`
        within ``timeout`` seconds (default: the client's): on any failure, a deny."""
        loop = asyncio.get_running_loop()
        if timeout is None:
            budget = self._timeout
        elif isinstance(timeout, int | float) and 0 <= timeout < float("inf"):
            budget = float(timeout)
        else:
            raise ValueError("timeout must be a finite number of seconds >= 0")
        if not isinstance(action, str) or not action:
            raise ValueError("action must be a non-empty string")
        if context is not None and not isinstance(context, Mapping):
            raise TypeError("context must be a mapping or None")
        if not isinstance(consistency, Consistency):
            raise TypeError("consistency must be MINIMIZE_LATENCY, FULLY_CONSISTENT or at_least(state)")
        pending = _Pending(
            _entity(subject, wire.Subject, "subject"),
            action,
            _entity(resource, wire.Resource, "resource"),
            None if context is None else dict(context),
            loop.time() + budget,
        )
        d = await self._decide(pending, consistency)
        m.CHECKS.add(
            "unavailable"
            if d.error and d.error != REASON_INVALID_REQUEST
            else "invalid"
            if d.error
            else "allow"
            if d.decision
            else "deny",
            d.source,
        )
        return d

    async def check_many(
        self,
        checks: Sequence[Check],
        *,
        consistency: Consistency = MINIMIZE_LATENCY,
        timeout: float | None = None,  # noqa: ASYNC109 - as check()
    ) -> list[Decision]:
        """Several checks at once (they share batches); decisions in the order asked."""
        return list(
            await asyncio.gather(
                *(
                    self.check(c.subject, c.action, c.resource, c.context, consistency=consistency, timeout=timeout)
                    for c in checks
                )
            )
        )

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._own_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> PolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the check path ---------------------------------------------------------------------

    async def _decide(self, p: _Pending, consistency: Consistency) -> Decision:
        floor = self._seen
        if consistency.state is not None:
            floor = consistency.state.join(floor)
        rkey = b""
        if self._cache is not None or self._sf is not None:
            rkey = request_key(self.store, p.subject, p.action, p.resource, p.context)
        ck: L1Key | None = None
        if self._cache is not None and floor is not None and consistency.mode != "fully_consistent":
            ck = (floor.revision, floor.entities_version, rkey)
            if self._l1 is not None:
                hit = self._l1.get(ck)
                if hit is not None:
                    m.CACHE.add("l1", "hit")
                    return hit
                m.CACHE.add("l1", "miss")
        if self._breaker is not None and self._breaker.rejecting():
            return self._fallback(ck, "circuit breaker open")
        try:
            async with asyncio.timeout_at(p.deadline):
                if self._sf is None:
                    return await self._fill(p, ck, floor, rkey)
                flight = (consistency.mode, floor, rkey)
                if flight in self._sf:
                    m.SINGLEFLIGHT_JOINS.add()
                return await self._sf.do(flight, lambda: self._fill(p, ck, floor, rkey))
        except TimeoutError:
            return self._fallback(ck, "deadline passed")
        except Exception as exc:  # noqa: BLE001 - fail closed: whatever went wrong, deny
            return self._fallback(ck, str(exc) or type(exc).__name__)

    async def _fill(self, p: _Pending, ck: L1Key | None, floor: State | None, rkey: bytes) -> Decision:
        if ck is not None and self._l2 is not None:
            got = await self._l2.get(ck)
            if got is not None:
                d, expires_at = got
                m.CACHE.add("l2", "hit")
                if self._l1 is not None:
                    self._l1.put(ck, msgspec.structs.replace(d, source="l1"), expires_at)
                return d
            m.CACHE.add("l2", "miss")
        if self._batcher is not None:
            d = await self._batcher.submit(p)
        else:
            (result,) = await self._flush([p])
            if isinstance(result, BaseException):
                raise result
            d = result
        if d.error is not None:
            return d  # a bad question: answered as such, never cached
        state = d.state
        assert state is not None
        if not state.covers(floor):
            raise Unavailable(f"the service answered from revision {state.revision}, older than one already seen")
        # The answer was asked for at ``floor`` or later, so it stands for ``floor`` too: a state
        # learned from an announcement (say an entities_version the answer does not report) keys
        # the entry, or a client that advanced would never hit what it stores.
        state = state.join(floor)
        self._seen = state.join(self._seen)
        if self._cache is not None:
            self._store(rkey, d, state)
        return d

    def _store(self, rkey: bytes, d: Decision, state: State) -> None:
        assert self._cache is not None
        ttl = self._cache.ttl if d.decision else self._cache.deny_ttl
        key: L1Key = (state.revision, state.entities_version, rkey)
        if self._l1 is not None:
            self._l1.put(key, msgspec.structs.replace(d, source="l1"), self._wall() + ttl)
        if self._l2 is not None:
            task = asyncio.get_running_loop().create_task(self._l2.put(key, d, ttl))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _fallback(self, ck: L1Key | None, detail: str) -> Decision:
        if ck is not None and self._l1 is not None and self._cache is not None and self._cache.stale_if_error > 0:
            stale = self._l1.get_stale(ck)
            if stale is not None:
                m.FALLBACKS.add("stale")
                return msgspec.structs.replace(stale, source=_STALE_SOURCE)
        m.FALLBACKS.add("deny")
        return unavailable(detail)

    # -- one call to the service (a batch of one or more checks) ------------------------------

    async def _flush(self, items: list[_Pending]) -> list[Decision | BaseException]:
        if len(items) == 1:
            p = items[0]
            body = wire.encode(wire.EvaluationRequest(p.subject, wire.Action(p.action), p.resource, p.context))
            return list(await self._call("evaluation", body, p.deadline, 1))
        body = wire.encode(
            wire.EvaluationsRequest(
                evaluations=[
                    wire.EvaluationItem(p.subject, wire.Action(p.action), p.resource, p.context) for p in items
                ]
            )
        )
        return list(await self._call("evaluations", body, max(p.deadline for p in items), len(items)))

    def _parse(self, endpoint: str, resp: Response, count: int) -> list[Decision]:
        """The decisions in a response, or an exception: ``Unavailable`` for a sick answer (a breaker
        failure), ``_Refused`` for a deliberate refusal of the whole request."""
        status = resp.status
        if status == 200:
            if endpoint == "evaluation":
                return [_item_decision(wire.decode_decision(resp.body))]
            decisions = wire.decode_evaluations_response(resp.body).evaluations
            if len(decisions) != count:
                raise Unavailable(f"the service answered {len(decisions)} decisions for {count} checks")
            return [_item_decision(d) for d in decisions]
        if status in (400, 413, 422):
            # The question is malformed: every check in the request gets that answer (a deny).
            return [_invalid(_error_text(resp.body))] * count
        if 400 <= status < 500 and status != 429:
            raise _Refused(f"the service refused the call ({status}: {_error_text(resp.body)})")
        raise Unavailable(f"the service answered {status}")

    async def _call(self, endpoint: str, body: bytes, deadline: float, count: int) -> list[Decision]:
        loop = asyncio.get_running_loop()
        path = self._paths[endpoint]
        m.BATCH_SIZE.observe(count)
        if self._budget is not None:
            self._budget.deposit()
        attempt = 1
        last: str | None = None
        url: str | None = None
        while True:
            ticket = self._breaker.allow() if self._breaker is not None else 0
            if ticket is None:
                raise Unavailable("circuit breaker open")
            remaining = deadline - loop.time()
            if remaining <= 0:
                if self._breaker is not None:
                    self._breaker.release(ticket)
                raise Unavailable(last or "deadline passed")
            url = self._pick(last_url=url)
            self._outstanding[url] += 1
            started = time.perf_counter()
            outcome = "error"
            try:
                resp = await self._transport.post(url + path, body, self._headers, timeout=remaining)
                decisions = self._parse(endpoint, resp, count)
            except _Refused as exc:
                outcome = "refused"
                self._record(ticket, True)
                raise Unavailable(str(exc)) from None
            except TimeoutError:
                # The deadline is spent: no retry can help, and the service is slow or stopped.
                outcome = "timeout"
                self._record(ticket, False)
                raise Unavailable("timed out waiting for the policy service") from None
            except Exception as exc:  # noqa: BLE001 - transport, HTTP or decoding: fail closed
                self._record(ticket, False)
                last = f"{type(exc).__name__}: {exc}"[:512]
            except BaseException:
                if self._breaker is not None:
                    self._breaker.release(ticket)
                raise
            else:
                outcome = "ok"
                self._record(ticket, True)
                return decisions
            finally:
                self._outstanding[url] -= 1
                m.CALL_SECONDS.labels(endpoint, outcome).observe(time.perf_counter() - started)
            if attempt >= (self._budget.max_attempts if self._budget else 1) or loop.time() >= deadline:
                raise Unavailable(last)
            assert self._budget is not None
            if not self._budget.withdraw():
                m.RETRIES.add("budget_exhausted")
                raise Unavailable(last)
            m.RETRIES.add("sent")
            attempt += 1

    def _record(self, ticket: int, ok: bool) -> None:
        if self._breaker is not None:
            self._breaker.record(ticket, ok)

    def _pick(self, last_url: str | None) -> str:
        """Power of two choices on outstanding calls; a retry avoids the URL that just failed."""
        urls = self._urls
        if len(urls) == 1:
            return urls[0]
        a, b = random.sample(urls, 2)
        if last_url is not None:
            if a == last_url:
                return b
            if b == last_url:
                return a
        return a if self._outstanding[a] <= self._outstanding[b] else b

    def _transition(self, was: StateName, to: StateName) -> None:
        m.BREAKER_TRANSITIONS.add(self.store, to)
        m.BREAKER_STATE.labels(self.store).set(m.STATE_CODE[to])
