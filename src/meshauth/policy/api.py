"""HTTP routes: the AuthZEN decision API (open to the mesh) and the admin API (admin bearer token).

Decision API: ``POST /access/v1/evaluation``, ``POST /access/v1/evaluations`` (store ``default``),
the same under ``/stores/{store}/`` (served by ``fast.DecisionFront``, in front of Starlette), and
``GET /.well-known/authzen-configuration``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshauth import wire
from meshauth.admin_token import is_admin, read_admin_token
from meshauth.config import Settings
from meshauth.http import json_response, read_body
from meshauth.observability.metrics import metrics_endpoint
from meshauth.policy.admin import SCHEMA_FORMATS, Admin
from meshauth.policy.authzen import parse_evaluation, parse_evaluations
from meshauth.policy.errors import bad_request, not_found, not_json, unauthorized
from meshauth.policy.evaluator import Evaluator
from meshauth.policy.guard import DecisionGuard
from meshauth.policy.metrics import DECISIONS
from meshauth.policy.names import check_store, check_uid
from meshauth.policy.registry import Registry
from meshauth.policy.stores import DEFAULT_STORE, PRECEDENCES

_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def _store(request: Request) -> str:
    return check_store(request.path_params.get("store", DEFAULT_STORE))


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _decode_json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise not_json(exc) from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 inside strings only when it decodes them
        raise bad_request(
            "body", f"not valid JSON: a string is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def _flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise bad_request(name, "must be true or false")


def _outcome(decision: wire.Decision) -> str:
    if decision.context.error is not msgspec.UNSET:
        return "error"
    return "allow" if decision.decision else "deny"


MAX_VERSION = 2**31 - 1  # the column is a 32-bit INTEGER on PostgreSQL: no version is above it


def _version(request: Request) -> int:
    """The path's version number: ASCII digits only (``str.isdigit`` also accepts ``²`` and ``٣``),
    and one past what the database can hold is a version that does not exist."""
    raw = request.path_params["version"]
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request("version", "must be a positive integer")
    version = int(raw)
    if version > MAX_VERSION:
        raise not_found(f"store {_store(request)!r} has no policy version {raw}")
    return version


@dataclass
class PolicyApi:
    settings: Settings
    registry: Registry
    evaluator: Evaluator
    admin: Admin
    admin_token: str | None
    guard: DecisionGuard | None = None  # who may ask the decision API; None: anyone (the default)

    # --- decision API (hot path: called by ``fast.DecisionFront``, not through Starlette) --------

    async def evaluation(self, store: str, body: bytes) -> bytes:
        check_store(store)
        state = await self.registry.get(store)
        query = parse_evaluation(body)
        (decision,) = await self.evaluator.decide(state, [query], self.registry.snapshot_for(state))
        DECISIONS.add("evaluation", _outcome(decision))
        return wire.encode(decision)

    async def evaluations(self, store: str, body: bytes) -> bytes:
        check_store(store)
        state = await self.registry.get(store)
        batch = parse_evaluations(body, self.settings.policy_max_evaluations)
        decisions = await self.evaluator.decide(state, batch.items, self.registry.snapshot_for(state))
        if batch.semantic != "execute_all":
            stop_on = batch.semantic == "permit_on_first_permit"
            for n, d in enumerate(decisions):
                if d.decision == stop_on:
                    decisions = decisions[: n + 1]
                    break
        counts = DECISIONS.counts
        for d in decisions:
            counts[("evaluations", _outcome(d))] += 1
        if batch.single:
            # No ``evaluations`` array: answer as ``…/evaluation`` does (AuthZEN 1.0 §7.1); the
            # same decision is also given as a one-item ``evaluations`` for batch-minded clients.
            only = decisions[0]
            return _encoder.encode({"decision": only.decision, "context": only.context, "evaluations": [only]})
        return wire.encode(wire.EvaluationsResponse(decisions))

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
        base = str(request.base_url).rstrip("/")
        if "store" in request.path_params:
            base = f"{base}/stores/{_store(request)}"
        return json_response(
            {
                "policy_decision_point": base,
                "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
                "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
            },
            headers={"cache-control": "max-age=300"},
        )

    async def health(self, _request: Request) -> Response:
        await self.admin.ping()
        return json_response({"status": "ok"})

    # --- admin API -----------------------------------------------------------------------------

    def is_admin(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token (constant-time)."""
        return is_admin(authorization, self.admin_token or read_admin_token(self.settings))

    def _check_admin(self, request: Request) -> None:
        if not self.is_admin(request.headers.get("authorization")):
            raise unauthorized()

    async def _admin_body(self, request: Request) -> bytes:
        self._check_admin(request)
        return await read_body(request, self.settings.policy_max_upload_bytes)

    async def put_store(self, request: Request) -> Response:
        """Create a store; an optional JSON body ``{"attribute_precedence": "request" | "stored"}``
        also sets its precedence (an empty body, as before, leaves an existing store as it is)."""
        self._check_admin(request)
        store = _store(request)
        body = await read_body(request, self.settings.policy_max_request_bytes)
        if not body.strip():
            return json_response(await self.admin.create_store(store))
        doc = _decode_json(body)
        if not isinstance(doc, dict):
            raise bad_request("body", 'must be a JSON object, e.g. {"attribute_precedence": "stored"}')
        for key in doc:
            if key != "attribute_precedence":
                # Refused, not ignored: a misspelt key would otherwise leave a store open silently.
                raise bad_request(str(key), "unknown store setting (known: attribute_precedence)")
        precedence = doc.get("attribute_precedence")
        if precedence not in PRECEDENCES:
            raise bad_request("attribute_precedence", f"must be one of {', '.join(PRECEDENCES)}")
        return json_response(await self.admin.configure_store(store, attribute_precedence=precedence))

    async def get_store(self, request: Request) -> Response:
        self._check_admin(request)
        store = _store(request)
        info = await self.admin.store_info(store)
        info["process"] = self.registry.describe(store)
        return json_response(info)

    async def list_stores(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.list_stores())

    async def delete_store(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.delete_store(_store(request)))

    async def post_policies(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        activate = _flag(request, "activate")
        author = request.headers.get("x-meshauth-author", "admin")
        if _media(request) == _JSON:
            doc = _decode_json(body)
            if not isinstance(doc, dict):
                raise bad_request("body", 'must be {"policies": "…", "activate": true}')
            text = doc.get("policies")
            if not isinstance(text, str):
                raise bad_request("policies", "must be a string of Cedar policy text")
            if "activate" in doc:
                if not isinstance(doc["activate"], bool):
                    raise bad_request("activate", "must be true or false")
                activate = doc["activate"]
            if "author" in doc:
                if not isinstance(doc["author"], str):
                    raise bad_request("author", "must be a string")
                author = doc["author"]
        else:
            try:
                text = body.decode()
            except UnicodeDecodeError:
                raise bad_request("body", "Cedar policy text must be UTF-8") from None
        result = await self.admin.upload(store, text, activate=activate, author=author)
        return json_response(result, status=201)

    async def get_policies(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.versions(_store(request)))

    async def get_version(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.version(_store(request), _version(request)))

    async def activate(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.activate(_store(request), _version(request)))

    async def put_schema(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise bad_request("body", "a schema must be UTF-8") from None
        fmt = request.query_params.get("format")
        if fmt is None:
            fmt = "json" if _media(request) == _JSON or text.lstrip().startswith("{") else "cedar"
        if fmt not in SCHEMA_FORMATS:
            raise bad_request("format", f"must be one of {', '.join(SCHEMA_FORMATS)}")
        return json_response(await self.admin.put_schema(store, text, fmt))

    async def get_schema(self, request: Request) -> Response:
        self._check_admin(request)
        return json_response(await self.admin.get_schema(_store(request)))

    async def post_entities(self, request: Request) -> Response:
        store = _store(request)
        body = await self._admin_body(request)
        doc = _decode_json(body)
        if isinstance(doc, dict) and "entities" in doc:
            doc = doc["entities"]
        return json_response(await self.admin.upsert_entities(store, doc))

    def _entity_uid(self, request: Request) -> tuple[str, str]:
        # Path parameters are already percent-decoded (once); decoding again would read ``a%2541`` as ``aA``.
        return check_uid("entity", request.path_params["type"], request.path_params["id"])

    async def delete_entity(self, request: Request) -> Response:
        self._check_admin(request)
        etype, eid = self._entity_uid(request)
        return json_response(await self.admin.delete_entity(_store(request), etype, eid))

    async def get_entity(self, request: Request) -> Response:
        self._check_admin(request)
        etype, eid = self._entity_uid(request)
        data = await self.admin.get_entity(_store(request), etype, eid)
        return Response(data, media_type=_JSON)

    def routes(self) -> list[Route]:
        s = "/stores/{store}"
        a = "/admin/stores/{store}"
        return [
            Route("/access/v1/evaluation", self.evaluation_route, methods=["POST"]),
            Route("/access/v1/evaluations", self.evaluations_route, methods=["POST"]),
            Route(f"{s}/access/v1/evaluation", self.evaluation_route, methods=["POST"]),
            Route(f"{s}/access/v1/evaluations", self.evaluations_route, methods=["POST"]),
            Route("/.well-known/authzen-configuration", self.configuration, methods=["GET"]),
            Route(f"{s}/.well-known/authzen-configuration", self.configuration, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/admin/stores", self.list_stores, methods=["GET"]),
            Route(a, self.put_store, methods=["PUT"]),
            Route(a, self.get_store, methods=["GET"]),
            Route(a, self.delete_store, methods=["DELETE"]),
            Route(f"{a}/policies", self.post_policies, methods=["POST"]),
            Route(f"{a}/policies", self.get_policies, methods=["GET"]),
            Route(a + "/policies/{version}", self.get_version, methods=["GET"]),
            Route(a + "/policies/{version}/activate", self.activate, methods=["POST"]),
            Route(f"{a}/schema", self.put_schema, methods=["PUT"]),
            Route(f"{a}/schema", self.get_schema, methods=["GET"]),
            Route(f"{a}/entities", self.post_entities, methods=["POST"]),
            Route(a + "/entities/{type}/{id:path}", self.delete_entity, methods=["DELETE"]),
            Route(a + "/entities/{type}/{id:path}", self.get_entity, methods=["GET"]),
        ]
