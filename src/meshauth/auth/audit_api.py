"""``GET /admin/audit`` and ``GET /admin/analytics`` (admin token): the bus workers' tables, read.

Every query parameter is validated before the database is asked; a bad one answers 400
``invalid_request`` naming it (``"field"`` in the body too), never a 500 or a driver error.
"""

from __future__ import annotations

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


def _pairs(request: Request) -> list[tuple[str, str]]:
    # Starlette decodes the query string leniently (invalid UTF-8 becomes U+FFFD), which the checks refuse.
    return list(request.query_params.multi_items())


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
        return json_response({"minutes": await analytics_query.minutes(self._s.engine, q)}, headers=NO_STORE)
