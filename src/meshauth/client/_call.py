"""One call to the policy service for a batch of checks: circuit breaker → endpoint (power of two
choices, ejection) → transport → retries within the retry budget and the batch's deadline.

The deadline of a call is the latest deadline of its batch (each caller stops waiting at its own);
no retry after the deadline, none after a timeout (the deadline is spent), at most
``max_attempts`` attempts, each retry paid from the budget, on another URL when there is one.

One check's question fails only that check (issue 10: "one failed item fails only its caller"). Before
this, a batch carrying one check the service refuses as a whole — a context that puts the body over
the service's limit (413), more checks than it takes (400) — or that the encoder cannot write (an
integer past 64 bits, a lone surrogate, nesting past the recursion limit) answered every check of the
batch ``invalid_request`` or failed it, and a huge check made its call as slow as its own evaluation
(a 100,000-element set attribute: ~125 ms in the service, the batch past the default 0.1 s deadline).
So:

- a check whose own request is over ``max_request_bytes`` (the service's ``policy_max_request_bytes``)
  or cannot be encoded is answered ``invalid_request`` here, without a call;
- a batch whose body is over a quarter of ``max_request_bytes`` (256 KiB by default; or cannot be
  encoded) is taken apart: each check is sized alone, one over :data:`LARGE_CHECK` goes in a call of
  its own (which another replica or worker can take beside the rest; one single-threaded worker still
  answers them in turn), the rest in calls of at most an eighth of it (never taken apart again).
  Ordinary batches (64 checks of a few hundred bytes, even ``check_many``'s 1,024) are never sized — sizing costs ~1.5
  µs a check, as much as the rest of an explicit batch's client work — so the only cost on the hot
  path is one length test;
- a call of several checks refused as a whole (400/413/422: :class:`WholeRefused`) is asked again in
  halves, down to single checks, which get the service's own answer (at most ``2n - 1`` calls for
  ``n`` checks, and only for refused ones).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from meshauth import wire
from meshauth.client._answers import Refused, Unavailable, WholeRefused, invalid, parse
from meshauth.client._breaker import CircuitBreaker
from meshauth.client._endpoints import FAILED_CALL_SECONDS, Endpoints
from meshauth.client._metrics import BATCH_SIZE, CALL_SECONDS, RETRIES
from meshauth.client._models import Decision
from meshauth.client._request import Pending
from meshauth.client._retry import RetryBudget
from meshauth.client._transport import Response, Transport
from meshauth.observability import trace

__all__ = ["LARGE_CHECK", "MAX_REQUEST_BYTES", "Caller"]

MAX_REQUEST_BYTES = 1_048_576  # the policy service's default ``policy_max_request_bytes``
LARGE_CHECK = 16_384  # a check above this goes in a call of its own
# What msgspec raises for a value it cannot write as JSON (UnicodeEncodeError is a ValueError).
_UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)


class Caller:
    def __init__(
        self,
        transport: Transport,
        endpoints: Endpoints,
        *,
        store: str,
        headers: Mapping[str, str],
        breaker: CircuitBreaker | None,
        budget: RetryBudget | None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.transport = transport
        self.max_request_bytes = max_request_bytes
        self._large_batch = max_request_bytes // 4  # a batch body above this is taken apart (module docstring)
        self.endpoints = endpoints
        self.breaker = breaker
        self._budget = budget
        self._headers = dict(headers)
        base = f"/stores/{store}/access/v1/"
        self._paths = {"evaluation": base + "evaluation", "evaluations": base + "evaluations"}

    async def flush(self, items: list[Pending]) -> list[Decision | BaseException]:
        """The batcher's flush: one call for ``items`` (``evaluation`` for one, else ``evaluations``),
        or several when one check's question would fail the others (module docstring).

        The call carries the trace of its first check's request (``trace.call_started``)."""
        endpoint = "evaluation" if len(items) == 1 else "evaluations"
        headers, span = trace.call_started([p.request for p in items], f"policy {endpoint}", len(items))
        try:
            return await self._asked(items, headers)
        except BaseException as exc:
            trace.call_ended(span, f"{type(exc).__name__}: {exc}")
            span = None
            raise
        finally:
            trace.call_ended(span)

    async def _asked(self, items: list[Pending], headers: Mapping[str, str]) -> list[Decision | BaseException]:
        if len(items) == 1:
            p = items[0]
            try:
                body = wire.encode(_single(p))
            except _UNENCODABLE as exc:
                return [invalid(f"the check cannot be encoded: {exc}")]
            if len(body) > self.max_request_bytes:
                return [
                    invalid(
                        f"the check is {len(body)} bytes encoded; the service takes at most {self.max_request_bytes}"
                    )
                ]
            return list(await self.call("evaluation", body, p.deadline, 1, headers))
        actions = [p.action for p in items]
        if actions.count(actions[0]) == len(actions):
            # One action for all (the usual batch): sent once, as the batch's default (AuthZEN
            # 1.0 §7.1), not in every item — fewer bytes and structs to build and decode, both sides.
            request = wire.EvaluationsRequest(
                evaluations=[wire.EvaluationItem(p.subject, None, p.resource, p.context) for p in items],
                action=wire.Action(actions[0]),
            )
        else:
            request = wire.EvaluationsRequest(
                evaluations=[
                    wire.EvaluationItem(p.subject, wire.Action(p.action), p.resource, p.context) for p in items
                ]
            )
        try:
            body = wire.encode(request)
        except _UNENCODABLE:
            return await self._apart(items, headers)
        if len(body) > self._large_batch:
            return await self._apart(items, headers)
        try:
            return list(await self.call("evaluations", body, max(p.deadline for p in items), len(items), headers))
        except WholeRefused:
            half = len(items) // 2
            first, second = await self._groups([items[:half], items[half:]], headers)
            return first + second

    async def _apart(self, items: list[Pending], headers: Mapping[str, str]) -> list[Decision | BaseException]:
        """``items`` sized one by one: the unwritable and the oversized answered here, a large one in
        a call of its own, the rest packed into calls of at most an eighth of ``max_request_bytes``."""
        out: list[Decision | BaseException | None] = [None] * len(items)
        alone: list[list[int]] = []
        packed: list[list[int]] = [[]]
        size = 0
        for n, p in enumerate(items):
            try:
                one = len(wire.encode(_single(p)))
            except _UNENCODABLE as exc:
                out[n] = invalid(f"the check cannot be encoded: {exc}")
                continue
            if one > LARGE_CHECK:
                alone.append([n])  # over the service's limit too: the single path answers it
                continue
            # Half the threshold that sent us here: a packed group's own body stays under it (no
            # second taking apart), and far under the service's limit.
            if packed[-1] and size + one > self._large_batch // 2:
                packed.append([])
                size = 0
            packed[-1].append(n)
            size += one
        groups = alone + [g for g in packed if g]
        for members, answers in zip(
            groups, await self._groups([[items[n] for n in g] for g in groups], headers), strict=True
        ):
            for n, answer in zip(members, answers, strict=True):
                out[n] = answer
        return [a for a in out if a is not None]

    async def _groups(
        self, groups: list[list[Pending]], headers: Mapping[str, str]
    ) -> list[list[Decision | BaseException]]:
        """Each group asked on its own, at once; a group whose call fails fails its own checks only."""
        got = await asyncio.gather(*(self._asked(g, headers) for g in groups), return_exceptions=True)
        return [[r] * len(g) if isinstance(r, BaseException) else r for g, r in zip(groups, got, strict=True)]

    async def post(self, body: bytes, timeout: float) -> Response:  # noqa: ASYNC109 - one attempt's own bound
        """One ``evaluations`` call outside the breaker, retries and metrics (the staged warmer's: its
        failures say nothing about the service's health for checks, and it never retries)."""
        url = self.endpoints.pick()
        return await self.transport.post(url + self._paths["evaluations"], body, self._headers, timeout=timeout)

    async def call(
        self, endpoint: str, body: bytes, deadline: float, count: int, extra: Mapping[str, str] | None = None
    ) -> list[Decision]:
        """One call (retried within the budget); ``extra``: headers of this call (its trace)."""
        loop = asyncio.get_running_loop()
        path = self._paths[endpoint]
        headers = {**self._headers, **extra} if extra else self._headers
        breaker, endpoints = self.breaker, self.endpoints
        BATCH_SIZE.observe(count)
        if self._budget is not None:
            self._budget.deposit()
        attempt = 1
        last: str | None = None
        url: str | None = None
        while True:
            ticket = breaker.allow() if breaker is not None else 0
            if ticket is None:
                raise Unavailable("circuit breaker open")
            remaining = deadline - loop.time()
            if remaining <= 0:
                if breaker is not None:
                    breaker.release(ticket)
                raise Unavailable(last or "deadline passed")
            url = endpoints.pick(avoid=url)
            endpoints.outstanding[url] += 1
            started = time.perf_counter()
            outcome = "error"
            try:
                resp = await self.transport.post(url + path, body, headers, timeout=remaining)
                decisions = parse(endpoint, resp, count)
            except WholeRefused:
                outcome = "refused"  # about the question, not the service's health: no retry, no breaker failure
                self._record(url, ticket, True, count)
                raise
            except Refused as exc:
                outcome = "refused"
                self._record(url, ticket, True, count)
                raise Unavailable(str(exc)) from None
            except TimeoutError:
                # The deadline is spent: no retry can help, and the service is slow or stopped.
                outcome = "timeout"
                self._record(url, ticket, False, count)
                raise Unavailable("timed out waiting for the policy service") from None
            except Exception as exc:  # noqa: BLE001 - transport, HTTP or decoding: fail closed
                self._record(url, ticket, False, count)
                last = f"{type(exc).__name__}: {exc}"[:512]
            except BaseException:
                if breaker is not None:
                    breaker.release(ticket)
                raise
            else:
                outcome = "ok"
                self._record(url, ticket, True, count)
                return decisions
            finally:
                endpoints.outstanding[url] -= 1
                took = time.perf_counter() - started
                # A failure counts as slow, or a URL that fails fast would look the fastest.
                endpoints.observe(url, took if outcome in ("ok", "refused") else max(took, FAILED_CALL_SECONDS))
                CALL_SECONDS.observe(took, endpoint, outcome)
            if attempt >= (self._budget.max_attempts if self._budget else 1) or loop.time() >= deadline:
                raise Unavailable(last)
            assert self._budget is not None
            if not self._budget.withdraw():
                RETRIES.add("budget_exhausted")
                raise Unavailable(last)
            RETRIES.add("sent")
            attempt += 1

    def _record(self, url: str, ticket: int, ok: bool, checks: int) -> None:
        if self.breaker is not None:
            self.breaker.record(ticket, ok, checks)
        self.endpoints.record(url, ok)


def _single(p: Pending) -> wire.EvaluationRequest:
    return wire.EvaluationRequest(p.subject, wire.Action(p.action), p.resource, p.context)
