"""``/admin/``: users and clients, behind the admin bearer token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from meshauth.admin_token import is_admin, one_authorization
from meshauth.auth.accounts import (
    AccountError,
    AlreadyExists,
    new_client,
    new_user,
)
from meshauth.auth.client_auth import ClientAuthenticator
from meshauth.auth.offboarding import cut_off, cut_off_client
from meshauth.auth.service import AuthService
from meshauth.http import ApiError, json_response, read_json_object

Endpoint = Callable[[Request], Awaitable[Response]]

CLIENT_FIELDS = frozenset({"client_id", "client_secret", "scopes", "grant_types"})
USER_FIELDS = frozenset({"username", "password", "attributes"})


def _unknown_fields(body: dict[str, object], allowed: frozenset[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(400, "invalid_request", f"unknown field {extra[0]!r}")


class AdminEndpoints:
    def __init__(self, service: AuthService, clients: ClientAuthenticator) -> None:
        self._s = service
        self._clients = clients

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        async def wrapper(request: Request) -> Response:
            if not is_admin(one_authorization(request.headers.getlist("authorization")), self._s.admin_token):
                raise ApiError(
                    401,
                    "unauthorized",
                    "admin bearer token required",
                    headers={"www-authenticate": 'Bearer realm="meshauth-admin"'},
                )
            for name, value in request.path_params.items():
                # Every admin path parameter names a user or a client, looked up in SQL: PostgreSQL text
                # cannot hold a NUL, so it is refused here, once for all routes, not by the driver (a 503).
                if isinstance(value, str) and "\x00" in value:
                    raise ApiError(400, "invalid_request", f"path parameter {name!r} contains a NUL character")
            response = await endpoint(request)
            self._s.audit.admin(request.method, request.url.path, response.status_code)
            return response

        return wrapper

    async def create_client(self, request: Request) -> Response:
        body = await read_json_object(request, self._s.settings.max_body_bytes)
        _unknown_fields(body, CLIENT_FIELDS)
        try:
            new = new_client(
                body.get("client_id"),
                body.get("client_secret"),
                body.get("scopes", []),
                body.get("grant_types", ["client_credentials"]),
            )
        except AccountError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        try:
            secret_hash = await self._s.passwords.hash_async(new.secret)
            client = await self._s.accounts.add_client(new.client_id, secret_hash, new.scopes, new.grant_types)
        except AlreadyExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return json_response(client.public(), status=201)

    async def list_clients(self, _request: Request) -> Response:
        return json_response({"clients": [c.public() for c in await self._s.accounts.list_clients()]})

    async def disable_client(self, request: Request) -> Response:
        client_id = request.path_params["client_id"]
        await self._cut_off_client(client_id, await self._s.accounts.set_client_disabled(client_id, True))
        return json_response({"client_id": client_id, "disabled": True})

    async def delete_client(self, request: Request) -> Response:
        client_id = request.path_params["client_id"]
        await self._cut_off_client(client_id, await self._s.accounts.delete_client(client_id))
        return Response(status_code=204)

    async def _cut_off_client(self, client_id: str, found: bool) -> None:
        if not found:
            raise ApiError(404, "not_found", f"no client {client_id!r}")
        self._clients.forget(client_id)
        await cut_off_client(client_id, refresh=self._s.refresh_tokens, denylist=self._s.denylist)

    async def create_user(self, request: Request) -> Response:
        body = await read_json_object(request, self._s.settings.max_body_bytes)
        _unknown_fields(body, USER_FIELDS)
        try:
            new = new_user(body.get("username"), body.get("password"), body.get("attributes", {}))
        except AccountError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        try:
            password_hash = await self._s.passwords.hash_async(new.password)
            user = await self._s.accounts.add_user(new.username, password_hash, new.attributes)
        except AlreadyExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return json_response(user.public(), status=201)

    async def list_users(self, _request: Request) -> Response:
        return json_response({"users": [u.public() for u in await self._s.accounts.list_users()]})

    async def disable_user(self, request: Request) -> Response:
        username = request.path_params["username"]
        if not await self._s.accounts.set_user_disabled(username, True):
            raise ApiError(404, "not_found", f"no user {username!r}")
        ended = await self._cut_off(username)
        return json_response({"username": username, "disabled": True, "ended": ended})

    async def delete_user(self, request: Request) -> Response:
        username = request.path_params["username"]
        if not await self._s.accounts.delete_user(username):
            raise ApiError(404, "not_found", f"no user {username!r}")
        await self._cut_off(username)
        return Response(status_code=204)

    async def _cut_off(self, username: str) -> int:
        s = self._s
        return await cut_off(username, refresh=s.refresh_tokens, denylist=s.denylist, sessions=s.sessions)
