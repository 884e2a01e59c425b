"""``POST /v1/authorize``: may the caller's credential do this? Asked of the policy service.

Request: a bearer token or the session cookie (the gate's rules: two of either is 401
``invalid_request``), and ``{"action": "read", "resource": {"type": "Document", "id": "d1"},
"context": {...}}`` (``context`` optional). Answer: ``{"decision": true|false, "reasons": [...],
"revision": N, "entities_version": M|null}``. The subject is the credential's (``authz_questions.subject_for``)
and the context gets the credential's ``scope`` (a list of scope tokens) and ``client_id``, replacing
keys of those names a caller sent. The store is ``MESHAUTH_POLICY_STORE``.

Errors: no or a bad credential 401 (``www-authenticate``); a malformed body 400 ``invalid_request``
naming the field; the policy service calling the question malformed 400 ``invalid_request``; no
decision (service down, slow past ``MESHAUTH_POLICY_CHECK_DEADLINE``, breaker open) 503
``policy_unavailable``. The policy client is created on the first request (authn mode creates none
until this endpoint is used) and shared with the gate in authz mode.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meshauth.auth.authz import Authorizer, policy_client
from meshauth.auth.authz_questions import credential_context, subject_for
from meshauth.auth.gate import MISSING, Gate, Verdict, join_cookies
from meshauth.auth.service import AuthService
from meshauth.client import REASON_INVALID_REQUEST, PolicyClient
from meshauth.http import ApiError, json_response, read_json_object

MAX_FIELD_CHARS = 1024
MAX_CONTEXT_DEPTH = 16
# Cedar's Long is 64-bit; a larger int is no question the policy can answer (and the client's
# cache key cannot encode one past 64 bits: that was a 500).
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_request", f"{field} must be a non-empty string")
    if len(value) > MAX_FIELD_CHARS:
        raise ApiError(400, "invalid_request", f"{field} is longer than {MAX_FIELD_CHARS} characters")
    if "\x00" in value:
        raise ApiError(400, "invalid_request", f"{field} must not contain NUL")
    return value


def _depth_and_nul(value: object, field: str) -> None:
    """Refuse NUL anywhere in the context (keys too), nesting deeper than MAX_CONTEXT_DEPTH,
    integers outside Cedar's Long and floats."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_CONTEXT_DEPTH:
                raise ApiError(400, "invalid_request", f"{field} is nested deeper than {MAX_CONTEXT_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and "\x00" in item:
            raise ApiError(400, "invalid_request", f"{field} must not contain NUL")
        elif isinstance(item, int) and not LONG_MIN <= item <= LONG_MAX:
            raise ApiError(400, "invalid_request", f"{field}: integers must fit in 64 bits (Cedar Long)")
        elif isinstance(item, float):
            # The policy service cannot build a Cedar request holding one: its answer is a deny with
            # an error, which this endpoint would pass on as a plain {"decision": false}.
            raise ApiError(400, "invalid_request", f"{field}: numbers must be integers (Cedar has no floats)")


def parse_question(body: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``(action, resource, context)`` from a request body, or a 400 naming the field."""
    unknown = sorted(set(body) - {"action", "resource", "context"})
    if unknown:
        allowed = "allowed: action, resource, context"
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0][:64]!r} ({allowed})")
    action = _text(body.get("action"), "action")
    resource = body.get("resource")
    if not isinstance(resource, dict):
        raise ApiError(400, "invalid_request", "resource must be an object with type and id")
    extra = sorted(set(resource) - {"type", "id"})
    if extra:
        raise ApiError(400, "invalid_request", f"resource: unknown field {extra[0][:64]!r} (allowed: type, id)")
    rtype = _text(resource.get("type"), "resource.type")
    rid = _text(resource.get("id"), "resource.id")
    context = body.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ApiError(400, "invalid_request", "context must be an object")
    _depth_and_nul(context, "context")
    return action, {"type": rtype, "id": rid}, context


def _unauthorized(verdict: Verdict) -> ApiError:
    if verdict.status == 503:
        return ApiError(
            503,
            "temporarily_unavailable",
            verdict.reason or "credential cannot be checked now",
            headers={"retry-after": "1"},  # as every other 503 of the service (http.unavailable_handler)
        )
    error = "invalid_request" if "invalid_request" in dict(verdict.headers).get("www-authenticate", "") else ""
    return ApiError(
        401,
        error or ("unauthorized" if verdict is MISSING else "invalid_token"),
        verdict.reason or "a bearer token or session cookie is required",
        headers=dict(verdict.headers),
    )


class AuthorizeEndpoint:
    def __init__(self, service: AuthService, authorizer: Authorizer | None) -> None:
        self._s = service
        self._gate = Gate(service)
        self._shared = authorizer is not None
        self._client: PolicyClient | None = authorizer.client if authorizer is not None else None

    @property
    def client(self) -> PolicyClient:
        if self._client is None:
            self._client = policy_client(self._s.settings, self._s.redis)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and not self._shared:
            await self._client.aclose()

    async def _authenticate(self, request: Request) -> Verdict:
        authorizations = [v.decode("latin-1") for k, v in request.scope["headers"] if k == b"authorization"]
        cookies = [v.decode("latin-1") for k, v in request.scope["headers"] if k == b"cookie"]
        verdict = self._gate.screen(authorizations)
        if verdict is None:
            verdict = await self._gate.check(authorizations[0] if authorizations else None, join_cookies(cookies))
        return verdict

    async def authorize(self, request: Request) -> Response:
        verdict = await self._authenticate(request)
        if not verdict.allowed:
            raise _unauthorized(verdict)
        body = await read_json_object(request, self._s.settings.max_body_bytes)
        action, resource, context = parse_question(body)
        subject, client_id, scope = (value for _, value in verdict.headers)
        decision = await self.client.check(
            subject_for(verdict.credential, subject, client_id),
            action,
            resource,
            {**context, **credential_context(client_id, scope)},
        )
        if decision.error == REASON_INVALID_REQUEST:
            detail = "; ".join(decision.errors) or "the policy service refused the question"
            raise ApiError(400, "invalid_request", detail[:512])
        if decision.error is not None:
            raise ApiError(
                503,
                "policy_unavailable",
                "no decision could be had from the policy service (down, slow, or refusing); try again",
                headers={"retry-after": "1"},
            )
        return json_response(
            {
                "decision": decision.decision,
                "reasons": list(decision.reasons),
                "revision": decision.revision,
                "entities_version": decision.entities_version,
            },
            headers={"cache-control": "no-store"},
        )
