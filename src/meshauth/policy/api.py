"""HTTP routes: the AuthZEN decision API (open to the mesh), and the admin API's (``admin_routes``).

Decision API: ``POST /access/v1/evaluation``, ``POST /access/v1/evaluations`` (store ``default``),
the same under ``/stores/{store}/`` (served by ``decision_front.DecisionFront``, in front of Starlette), and
``GET /.well-known/authzen-configuration``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshauth import wire
from meshauth.config import Settings
from meshauth.http import json_response, read_body
from meshauth.observability import trace
from meshauth.observability.metrics import metrics_endpoint
from meshauth.policy.admin import Admin
from meshauth.policy.admin_routes import AdminRoutes
from meshauth.policy.audit_hooks import PolicyAudit
from meshauth.policy.authzen import Batch, parse_evaluation, parse_evaluations
from meshauth.policy.coalescer import Coalescer
from meshauth.policy.evaluator import Evaluator
from meshauth.policy.guard import DecisionGuard
from meshauth.policy.metrics import DECISIONS, add_many
from meshauth.policy.names import check_store
from meshauth.policy.registry import Registry
from meshauth.policy.staged import label
from meshauth.policy.state import StoreState
from meshauth.policy.stores import DEFAULT_STORE
from meshauth.readiness import ReadyChecks, readiness_response
from meshauth.redis_client import RedisConn

_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def _outcome(decision: wire.Decision) -> str:
    if decision.context.error is not msgspec.UNSET:
        return "error"
    return "allow" if decision.decision else "deny"


# Up to this many decisions, counted one by one; above, per distinct answer object in C (the
# evaluator shares alike answers). Two ``Counter``s cost ~1.5 µs a call, more than a small batch's loop.
_COUNT_ONE_BY_ONE = 16


def _cut(batch: Batch, decisions: list[wire.Decision]) -> list[wire.Decision]:
    """The answers ``batch.semantic`` keeps (AuthZEN 1.0 §7.2): all, or up to the first deny / permit."""
    if batch.semantic == "execute_all":
        return decisions
    stop_on = batch.semantic == "permit_on_first_permit"
    for n, d in enumerate(decisions):
        if d.decision == stop_on:
            return decisions[: n + 1]
    return decisions


def _outcomes(decisions: list[wire.Decision]) -> dict[str, int]:
    """How many of ``decisions`` allow, deny and errored."""
    if len(decisions) > _COUNT_ONE_BY_ONE:
        shared = collections.Counter(map(id, decisions))
        by_id = dict(zip(map(id, decisions), decisions, strict=True))
        many: collections.Counter[str] = collections.Counter()
        for ident, n in shared.items():
            many[_outcome(by_id[ident])] += n
        return many
    counts: dict[str, int] = {}
    for decision in decisions:
        outcome = _outcome(decision)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@dataclass
class PolicyApi:
    settings: Settings
    registry: Registry
    evaluator: Evaluator
    admin: Admin
    admin_token: str | None
    guard: DecisionGuard | None = None  # who may ask the decision API; None: anyone (the default)
    audit: PolicyAudit = field(default_factory=PolicyAudit)
    coalescer: Coalescer | None = None  # concurrent single evaluations answered together (issue 11)
    redis: RedisConn | None = None  # the announcer's connection, for /readyz to report
    ready_checks: ReadyChecks = field(default_factory=ReadyChecks)  # a /readyz storm shares one check

    def __post_init__(self) -> None:
        self.admin_routes = AdminRoutes(self.settings, self.registry, self.admin, self.admin_token, self.audit)

    def is_admin(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token (constant-time)."""
        return self.admin_routes.is_admin(authorization)

    # --- decision API (hot path: called by ``decision_front.DecisionFront``, not through Starlette) --------

    async def evaluation(self, store: str, body: bytes) -> bytes:
        started = time.perf_counter_ns()
        check_store(store)
        state = await self.registry.get(store)
        query = parse_evaluation(body, max_values=self.settings.policy_max_request_values)
        with trace.span("policy.evaluate", store=store, checks=1):
            if self.coalescer is not None:
                decision = await self.coalescer.decide(state, query, self.registry.snapshot_for(state))
            else:
                (decision,) = await self.evaluator.decide(state, [query], self.registry.snapshot_for(state))
        DECISIONS.add("evaluation", _outcome(decision))
        self.audit.decisions(store, (query,), (decision,), started)
        return wire.encode(decision)

    async def evaluations(self, store: str, body: bytes) -> bytes:
        started = time.perf_counter_ns()
        check_store(store)
        state = await self.registry.get(store)
        settings = self.settings
        batch = parse_evaluations(
            body,
            settings.policy_max_evaluations,
            max_bytes=settings.policy_max_request_bytes,
            max_values=settings.policy_max_request_values,
        )
        if batch.staged_version is not None:
            return await self._staged(state, batch)
        with trace.span("policy.evaluate", store=store, checks=len(batch.items)):
            decisions = _cut(batch, await self.evaluator.decide(state, batch.items, self.registry.snapshot_for(state)))
        outcomes = _outcomes(decisions)
        self.audit.decisions(store, batch.items, decisions, started)
        for outcome, n in outcomes.items():
            add_many(DECISIONS, n, "evaluations", outcome)
        if batch.single:
            # No ``evaluations`` array: answer as ``…/evaluation`` does (AuthZEN 1.0 §7.1); the
            # same decision is also given as a one-item ``evaluations`` for batch-minded clients.
            only = decisions[0]
            return _encoder.encode({"decision": only.decision, "context": only.context, "evaluations": [only]})
        return wire.encode(wire.EvaluationsResponse(decisions))

    async def _staged(self, active: StoreState, batch: Batch) -> bytes:
        """A warmer's batch against a staged version (``staged.py``): labelled as staged, never
        audited nor counted as decisions (nothing is decided for a request by them)."""
        assert batch.staged_version is not None
        async with self.registry.staged.turn():
            state = await self.registry.staged.state(active, batch.staged_version)
            with trace.span("policy.evaluate_staged", store=active.name, checks=len(batch.items)):
                decisions = await self.evaluator.decide(state, batch.items, self.registry.snapshot_for(active))
        return wire.encode(wire.EvaluationsResponse(label(_cut(batch, decisions), state)))

    async def evaluation_route(self, request: Request) -> Response:
        """``…/access/v1/evaluation`` when reached through Starlette (the front normally answers
        it first); also what makes a GET on it a 405 rather than a 404."""
        return await self._decide_through_starlette(request, self.evaluation)

    async def evaluations_route(self, request: Request) -> Response:
        """``…/access/v1/evaluations`` when reached through Starlette (see ``evaluation_route``)."""
        return await self._decide_through_starlette(request, self.evaluations)

    async def _decide_through_starlette(
        self, request: Request, handler: Callable[[str, bytes], Awaitable[bytes]]
    ) -> Response:
        if self.guard is not None:
            refused = self.guard.check(
                request.headers.getlist("authorization"), request.headers.getlist("x-forwarded-client-cert")
            )
            if refused is not None:
                raise refused
        body = await read_body(request, self.settings.policy_max_request_bytes)
        return Response(await handler(request.path_params.get("store", DEFAULT_STORE), body), media_type=_JSON)

    async def configuration(self, request: Request) -> Response:
        """AuthZEN metadata. From ``policy_public_url`` when set (cacheable); else from the request's
        own Host — which its sender chooses, so the answer says ``no-store``: a shared cache that kept
        one made with ``Host: evil.example`` would send every client's decisions (and tokens) there."""
        public = self.settings.policy_public_url
        base = public if public is not None else str(request.base_url).rstrip("/")
        if "store" in request.path_params:
            base = f"{base}/stores/{check_store(request.path_params['store'])}"
        return json_response(
            {
                "policy_decision_point": base,
                "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
                "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
            },
            headers={"cache-control": "max-age=300" if public is not None else "no-store"},
        )

    async def health(self, _request: Request) -> Response:
        """Liveness: the process answers. Nothing is asked of the database (``/readyz`` does)."""
        return json_response({"status": "ok"})

    async def ready(self, _request: Request) -> Response:
        """Readiness: the database answers (stores and entities load from it). Redis, when configured,
        is reported but not required: decisions never read it; without it state changes reach this
        replica at the next ``policy_refresh_interval`` and audit events are spooled. Requiring it
        would take every replica out of rotation at once for a dependency decisions do not need."""
        probes: dict[str, Callable[[], Awaitable[object]]] = {"database": self.admin.ping}
        if self.redis is not None:
            probes["redis"] = self.redis.ping
        return readiness_response(await self.ready_checks.run(probes), optional={"redis"})

    def routes(self) -> list[Route]:
        s = "/stores/{store}"
        return [
            Route("/access/v1/evaluation", self.evaluation_route, methods=["POST"]),
            Route("/access/v1/evaluations", self.evaluations_route, methods=["POST"]),
            Route(f"{s}/access/v1/evaluation", self.evaluation_route, methods=["POST"]),
            Route(f"{s}/access/v1/evaluations", self.evaluations_route, methods=["POST"]),
            Route("/.well-known/authzen-configuration", self.configuration, methods=["GET"]),
            Route(f"{s}/.well-known/authzen-configuration", self.configuration, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/readyz", self.ready, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *self.admin_routes.routes(),
        ]
