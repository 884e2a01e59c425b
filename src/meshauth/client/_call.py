"""One call to the policy service for a batch of checks: circuit breaker → endpoint (power of two
choices, ejection) → transport → retries within the retry budget and the batch's deadline.

The deadline of a call is the latest deadline of its batch (each caller stops waiting at its own);
no retry after the deadline, none after a timeout (the deadline is spent), at most
``max_attempts`` attempts, each retry paid from the budget, on another URL when there is one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from meshauth import wire
from meshauth.client._answers import Refused, Unavailable, parse
from meshauth.client._breaker import CircuitBreaker
from meshauth.client._endpoints import FAILED_CALL_SECONDS, Endpoints
from meshauth.client._metrics import BATCH_SIZE, CALL_SECONDS, RETRIES
from meshauth.client._models import Decision
from meshauth.client._request import Pending
from meshauth.client._retry import RetryBudget
from meshauth.client._transport import Response, Transport
from meshauth.observability import trace

__all__ = ["Caller"]


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
    ) -> None:
        self.transport = transport
        self.endpoints = endpoints
        self.breaker = breaker
        self._budget = budget
        self._headers = dict(headers)
        base = f"/stores/{store}/access/v1/"
        self._paths = {"evaluation": base + "evaluation", "evaluations": base + "evaluations"}

    async def flush(self, items: list[Pending]) -> list[Decision | BaseException]:
        """The batcher's flush: one call for ``items`` (``evaluation`` for one, else ``evaluations``).

        The call carries the trace of its first check's request (``trace.call_started``)."""
        endpoint = "evaluation" if len(items) == 1 else "evaluations"
        headers, span = trace.call_started([p.request for p in items], f"policy {endpoint}", len(items))
        try:
            if len(items) == 1:
                p = items[0]
                body = wire.encode(wire.EvaluationRequest(p.subject, wire.Action(p.action), p.resource, p.context))
                return list(await self.call(endpoint, body, p.deadline, 1, headers))
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
            body = wire.encode(request)
            return list(await self.call(endpoint, body, max(p.deadline for p in items), len(items), headers))
        except BaseException as exc:
            trace.call_ended(span, f"{type(exc).__name__}: {exc}")
            span = None
            raise
        finally:
            trace.call_ended(span)

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
