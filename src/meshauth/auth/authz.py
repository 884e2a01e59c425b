"""Authz mode: after the gate authenticates a request, the route table and the policy service decide.

Only built when ``MESHAUTH_ROUTES_FILE`` is set; without it the gate is in authn mode and no policy
client exists. For an authenticated request (anything else keeps the gate's 401/503):

- the route table (``meshauth.routes``) matches the method and the path after ``/ext_authz``;
- ``default: authenticated`` for an unmatched path: 200 with the identity headers, as in authn mode;
- a deny by the table (``no_route``, ``method_not_routed``, ``path_not_canonical``,
  ``path_too_long``): 403 with ``x-meshauth-reason`` naming it; so is a request carrying a method or
  URL override header (``request_override``, :data:`OVERRIDE_HEADERS`), whatever its route;
- a route: the policy service is asked (``meshauth.client.PolicyClient``, L1 and L2 on the service's
  Redis) whether the credential's subject may do the route's action on its resource. A genuine allow:
  200 with the identity headers; a deny: 403 ``policy_denied`` (``policy_invalid_request`` when the
  service called the question malformed); no decision — service down, slow, breaker open, or the
  check deadline (``policy_check_deadline``, counted from the start of the request) passed: **503**
  ``x-meshauth-reason: policy_unavailable``. Never an allow on error.

Subject: a client-credentials token (``sub`` equal to ``client_id``: users and clients share one
namespace, ``accounts``) → ``{"type": "Client", "id": client_id}``; any other token or a session →
``{"type": "User", "id": sub}``. Context: ``{"scope": [scope tokens], "client_id": client_id}``.
Each (identity, route) question is prepared once (``authz_questions``) and looked up in L1 without a
coroutine (``PolicyClient.cached``); only a miss asks ``PolicyClient.check``.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from meshauth.auth.authz_questions import Questions
from meshauth.auth.gate import Verdict
from meshauth.client import (
    REASON_INVALID_REQUEST,
    BatchConfig,
    BreakerConfig,
    CacheConfig,
    Decision,
    PolicyClient,
    PoolConfig,
    StateFollower,
    WarmConfig,
)
from meshauth.config import Settings
from meshauth.redis_client import RedisConn
from meshauth.routes import REQUEST_OVERRIDE, RouteTable, load_routes

log = logging.getLogger(__name__)

REASON_HEADER = "x-meshauth-reason"
POLICY_DENIED = "policy_denied"
POLICY_INVALID = "policy_invalid_request"
POLICY_UNAVAILABLE = "policy_unavailable"
GATE_BATCH_WAIT = 0.005  # seconds a cold check may wait for a batch while another is out
# The breaker judges the last second, not the client default's ten: the gate serves thousands of checks
# a second, and a policy service that stops after a long healthy spell opens a breaker only once its
# failures match the window's earlier successes — with 10 s at 3,000 checks/s that took ~5 s, against
# the promised 1 s (tests/auth/test_authz.py::test_gate_breaker_opens_within_a_second_after_busy_health).
GATE_BREAKER = BreakerConfig(window=1.0, min_calls=20, count="checks")


def refused(status: int, reason: str, allowed: Verdict) -> Verdict:
    """403 (denied) or 503 (no decision) with ``x-meshauth-reason`` for the authenticated ``allowed``
    verdict, whose identity it keeps for the audit event (never sent: Envoy would pass it downstream)."""
    return _refused(status, reason, allowed.credential, allowed.headers[0][1], allowed.headers[1][1])


@functools.lru_cache(maxsize=4096)  # a few reasons per identity; identities are few next to requests
def _refused(status: int, reason: str, credential: str, subject: str, client_id: str) -> Verdict:
    headers = ((REASON_HEADER, reason),)
    raw = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    return Verdict(status, headers, credential, reason, raw, identity=(subject, client_id))


def policy_client(settings: Settings, redis: RedisConn | None) -> PolicyClient:
    """The client both the gate and ``POST /v1/authorize`` use: L2 on the service's Redis."""
    return PolicyClient(
        list(settings.policy_base_urls),
        store=settings.policy_store,
        token=settings.gate_decision_token,
        timeout=settings.policy_check_deadline,
        redis=redis if settings.policy_l2_enabled else None,
        # Under the service's prefix: one hash tag for every meshauth key on a Redis Cluster.
        cache=CacheConfig(
            l1_size=settings.policy_cache_l1_size,
            ttl=settings.policy_cache_ttl,
            deny_ttl=settings.policy_cache_deny_ttl,
            l2_prefix=f"{settings.redis_prefix}decision:",
        ),
        warming=WarmConfig(state_prefix=settings.redis_prefix),
        pool=PoolConfig(transport=settings.policy_transport),
        # While a batch is out, further cold checks wait up to 5 ms (the client's default: 2) so they
        # share fewer, larger calls: 13-19 % less gate CPU per cold check under load (docs/performance.md,
        # issue 10). Fewer calls would slow a breaker that counts calls (a stopped policy service fails
        # few, large ones: it opened after 1.03-1.06 s, promised 1 s), so the breaker counts checks.
        batching=BatchConfig(max_wait=GATE_BATCH_WAIT),
        breaker=GATE_BREAKER,
        max_request_bytes=settings.policy_max_request_bytes,
    )


def verdict_for(decision: Decision, allowed: Verdict) -> Verdict:
    if decision.decision:
        return allowed
    if decision.error is None:
        return refused(403, POLICY_DENIED, allowed)
    if decision.error == REASON_INVALID_REQUEST:
        return refused(403, POLICY_INVALID, allowed)
    return refused(503, POLICY_UNAVAILABLE, allowed)


class Authorizer:
    """The gate's authz step. ``start``/``stop`` with the service (the state follower reads Redis)."""

    def __init__(self, settings: Settings, table: RouteTable, client: PolicyClient, redis_url: str) -> None:
        self.table = table
        self.client = client
        self.deadline = settings.policy_check_deadline
        self._questions = Questions(client)
        # The policy service announces under the same prefix (settings.redis_prefix) once it has Redis.
        self._follower = StateFollower(redis_url, [client], prefix=settings.redis_prefix)

    @classmethod
    def from_settings(cls, settings: Settings, redis: RedisConn, redis_url: str) -> Authorizer | None:
        if settings.routes_file is None:
            return None
        return cls(settings, load_routes(settings.routes_file), policy_client(settings, redis), redis_url)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
        await self.client.aclose()

    async def decide(
        self, verdict: Verdict, method: str, target: str, started: float, *, overridden: bool = False
    ) -> Verdict:
        """``verdict``: the gate's authn answer; ``started``: the request's start, event-loop time;
        ``overridden``: the request carries one of :data:`OVERRIDE_HEADERS`."""
        if not verdict.allowed:
            return verdict
        if overridden:
            return refused(403, REQUEST_OVERRIDE, verdict)
        route = self.table.match(method, target)
        if route.outcome == "allow":
            return verdict
        if route.outcome == "deny":
            return refused(403, route.reason, verdict)
        remaining = self.deadline - (asyncio.get_running_loop().time() - started)
        if remaining <= 0:
            return refused(503, POLICY_UNAVAILABLE, verdict)
        try:
            question = self._questions.get(verdict, route)
            decision = self.client.cached(question)
            if decision is None:
                # No asyncio.timeout around it: PolicyClient.check answers within ``timeout`` by contract
                # (an L1 hit at once, anything else under its own deadline), and a timeout context here
                # cost 5-6 µs per request, as much as the L1 hit itself. tests/auth/test_authz_failures.py
                # holds the gate to its deadline end to end (slow, stopped and killed policy services).
                # check_question: the question was validated and encoded when the memo made it.
                decision = await self.client.check_question(question, timeout=remaining)
        except Exception:  # fail closed: no decision is not an allow
            log.exception("policy check failed")
            return refused(503, POLICY_UNAVAILABLE, verdict)
        return verdict_for(decision, verdict)
