"""``GET /admin/audit`` and ``GET /admin/analytics`` (admin token): the bus workers' tables, read.

Every query parameter is validated before the database is asked; a bad one answers 400
``invalid_request`` naming it (``"field"`` in the body too), never a 500 or a driver error.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from meshauth.analytics import query as analytics_query
from meshauth.audit import query as audit_query
from meshauth.audit.query import BadFilter
from meshauth.auth.service import AuthService
from meshauth.http import ApiError, json_response

NO_STORE = {"cache-control": "no-store"}


def _bad(exc: BadFilter) -> ApiError:
    return ApiError(400, "invalid_request", f"query parameter {exc.field!r}: {exc.message}", extra={"field": exc.field})


MAX_QUERY_BYTES = 4096


def _pairs(request: Request) -> list[tuple[str, str]]:
    """The query string's pairs, decoded strictly: Starlette would turn bytes that are not UTF-8 into
    U+FFFD and search for that; here they are a 400 naming the parameter."""
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise BadFilter("query", f"longer than {MAX_QUERY_BYTES} bytes")
    pairs = []
    for chunk in raw.split(b"&"):
        if not chunk:
            continue
        name_raw, _, value_raw = chunk.partition(b"=")
        name = _unquote(name_raw, "query")
        pairs.append((name, _unquote(value_raw, name)))
    return pairs


def _unquote(raw: bytes, field: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadFilter(field[:64], "is not UTF-8") from None


class AuditEndpoints:
    def __init__(self, service: AuthService) -> None:
        self._s = service

    async def audit(self, request: Request) -> Response:
        try:
            q = audit_query.parse_query(_pairs(request))
        except BadFilter as exc:
            raise _bad(exc) from None
        events, next_cursor = await audit_query.search(self._s.engine, q)
        return json_response({"events": events, "next_cursor": next_cursor}, headers=NO_STORE)

    async def analytics(self, request: Request) -> Response:
        try:
            q = analytics_query.parse_query(_pairs(request))
        except BadFilter as exc:
            raise _bad(exc) from None
        answer = await analytics_query.read(self._s.engine, q)
        return json_response({"minutes": answer.minutes, "truncated": answer.truncated}, headers=NO_STORE)
