"""Bulk admin endpoints (issue 11), behind the admin bearer token:

- ``POST /admin/users:bulk``, ``POST /admin/clients:bulk``: a JSON array of the objects the
  single-create endpoints take (plus ``password_hash`` / ``client_secret_hash``, see ``bulk.py``),
  created or updated in one transaction. ``?partial=true`` writes the valid items and refuses the
  rest; the default is all or none. Answer: ``{"committed", "created", "updated", "refused"}`` with
  each item's index (and the reason for a refusal); 200 when committed, 422 when not.
- ``POST /oauth2/revoke:bulk``: ``{"tokens": [...], "jtis": [...]}`` — access or refresh tokens
  (revoked as ``/oauth2/revoke`` would, for any client), or bare jtis (denied for one access-token
  lifetime plus leeway: every token carrying one expires before that).

Limits: ``bulk_max_bytes`` of body (413), ``bulk_max_items`` items (413); bodies must be UTF-8 JSON.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from meshauth.auth.bulk_import import Report, import_clients, import_users
from meshauth.auth.bulk_store import Conflict
from meshauth.auth.hash_pool import HashPool
from meshauth.auth.service import AuthService
from meshauth.auth.tokens import TokenError
from meshauth.http import ApiError, json_response, media_type, read_body, utf8_problem

__all__ = ["BulkEndpoints"]

MAX_JTI_CHARS = 256


def _partial(request: Request) -> bool:
    values = request.query_params.getlist("partial")
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise ApiError(400, "invalid_request", "partial must be true or false (once)")
    return values[0] == "true"


class BulkEndpoints:
    def __init__(self, service: AuthService) -> None:
        self._s = service
        s = service.settings
        self.pool = HashPool(
            time_cost=s.argon2_time_cost,
            memory_kib=s.argon2_memory_kib,
            parallelism=s.argon2_parallelism,
            processes=s.bulk_hash_processes,
        )

    async def _json(self, request: Request) -> Any:
        if media_type(request.headers.get("content-type")) != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        raw = await read_body(request, self._s.settings.bulk_max_bytes)
        problem = utf8_problem(raw)
        if problem is not None:
            raise ApiError(400, "invalid_request", f"body is not valid JSON: {problem}")
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ApiError(400, "invalid_request", f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "invalid_request", "body is nested too deeply") from None

    def _check_count(self, count: int) -> None:
        limit = self._s.settings.bulk_max_items
        if count > limit:
            raise ApiError(413, "request_too_large", f"{count} items; the limit is {limit} per request")

    async def _items(self, request: Request) -> list[Any]:
        data = await self._json(request)
        if not isinstance(data, list):
            raise ApiError(400, "invalid_request", "body must be a JSON array of items")
        self._check_count(len(data))
        return data

    async def users(self, request: Request) -> Response:
        partial = _partial(request)
        items = await self._items(request)
        try:
            report = await import_users(self._s.engine, self.pool, items, partial=partial)
        except Conflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return _answer(report, "username")

    async def clients(self, request: Request) -> Response:
        partial = _partial(request)
        items = await self._items(request)
        try:
            report = await import_clients(self._s.engine, self.pool, items, partial=partial)
        except Conflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return _answer(report, "client_id")

    async def revoke(self, request: Request) -> Response:
        data = await self._json(request)
        if not isinstance(data, dict) or not set(data) <= {"tokens", "jtis"} or not data:
            raise ApiError(400, "invalid_request", 'body must be an object with "tokens" and/or "jtis" arrays')
        tokens, jtis = data.get("tokens", []), data.get("jtis", [])
        for name, value in (("tokens", tokens), ("jtis", jtis)):
            if not isinstance(value, list):
                raise ApiError(400, "invalid_request", f"{name} must be an array of strings")
        self._check_count(len(tokens) + len(jtis))
        revoked: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        deny: list[tuple[str, int]] = []
        s = self._s
        for n, token in enumerate(tokens):
            if not isinstance(token, str) or not token or len(token) > s.settings.max_token_bytes or "\x00" in token:
                refused.append({"field": "tokens", "index": n, "reason": "not a token"})
                continue
            kind = await self._token(token, deny)
            if kind is None:
                refused.append({"field": "tokens", "index": n, "reason": "not a valid token issued here"})
            else:
                revoked.append({"field": "tokens", "index": n, "kind": kind})
        until = int(time.time()) + s.settings.access_token_ttl
        for n, jti in enumerate(jtis):
            if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS or not jti.isprintable():
                refused.append(
                    {"field": "jtis", "index": n, "reason": f"jti must be 1-{MAX_JTI_CHARS} printable chars"}
                )
                continue
            deny.append((jti, until))
            revoked.append({"field": "jtis", "index": n, "kind": "jti"})
        await s.denylist.revoke_many(deny)
        return json_response({"revoked": revoked, "refused": refused}, headers={"cache-control": "no-store"})

    async def _token(self, token: str, deny: list[tuple[str, int]]) -> str | None:
        """Queue what revoking ``token`` denies; its kind, or None when it is no token of ours."""
        s = self._s
        try:
            identity = await s.verifier.verify(token)
        except TokenError:
            pass
        else:
            deny.append((identity.jti, identity.exp))
            return "access_token"
        refresh = await s.refresh_tokens.lookup(token)
        if refresh is None:
            return None
        # As /oauth2/revoke: the refresh token's whole family, and the access tokens issued from it.
        deny.extend(await s.refresh_tokens.revoke_family(str(refresh.family_id)))
        return "refresh_token"

    def close(self) -> None:
        self.pool.close()


def _answer(report: Report, name_field: str) -> Response:
    body = report.as_json(name_field)
    if report.committed:
        return json_response(body)
    count = len(report.refused)
    body = {
        "error": "invalid_request",
        "error_description": f"{count} item(s) refused; nothing was written (all or none; ?partial=true writes "
        "the valid items)",
        **body,
    }
    return json_response(body, status=422)
