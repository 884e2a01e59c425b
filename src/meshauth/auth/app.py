"""The auth service's ASGI app: ext_authz (raw ASGI, the hot path) in front of a Starlette router."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from meshauth import collector
from meshauth.auth.admin_api import AdminEndpoints
from meshauth.auth.admin_bulk import BulkEndpoints
from meshauth.auth.audit_api import AuditEndpoints
from meshauth.auth.authorize_api import AuthorizeEndpoint
from meshauth.auth.authz import Authorizer
from meshauth.auth.client_auth import ClientAuthenticator
from meshauth.auth.extauthz_grpc import start_grpc_server
from meshauth.auth.extauthz_http import PREFIX as EXT_AUTHZ_PREFIX
from meshauth.auth.extauthz_http import ExtAuthzHttp, is_ext_authz
from meshauth.auth.gate import Gate
from meshauth.auth.metrics import INVALIDATION_CONNECTED, JWT_CACHE, REVOKED_TOKENS
from meshauth.auth.oauth import OAuthEndpoints
from meshauth.auth.service import AuthService
from meshauth.auth.session_api import SessionEndpoints
from meshauth.config import Settings
from meshauth.config_load import load_settings
from meshauth.http import (
    ApiError,
    api_error_handler,
    http_exception_handler,
    internal_error_handler,
    json_response,
    unavailable_handler,
)
from meshauth.observability.metrics import metrics_endpoint, publisher
from meshauth.readiness import ReadyChecks, ping_database, readiness_response

log = logging.getLogger(__name__)


class AuthApp:
    """ASGI callable. ``grpc_port=None`` skips the gRPC listener (tests that do not need it)."""

    route_prefixes = (EXT_AUTHZ_PREFIX,)  # one metric label for every ext_authz path

    def __init__(self, settings: Settings, *, service: AuthService | None = None, grpc_port: int | None = None) -> None:
        self.settings = settings
        self.service = service or AuthService(settings)
        self.gate = Gate(self.service)
        # Authz mode only with MESHAUTH_ROUTES_FILE; otherwise the gate authenticates, as before.
        self.authorizer = Authorizer.from_settings(settings, self.service.redis, self.service.redis_url)
        self.authorize = AuthorizeEndpoint(self.service, self.authorizer)
        self.grpc_port = grpc_port
        self.grpc_bound: int | None = None
        self._grpc: grpc.aio.Server | None = None
        self.ext_authz = ExtAuthzHttp(self.gate, self.authorizer)
        self.ready_checks = ReadyChecks()  # a /readyz storm shares one check per dependency
        self.router = self._router()
        publisher(self._publish_metrics)

    def _router(self) -> Starlette:
        s = self.service
        clients = ClientAuthenticator(s)
        oauth = OAuthEndpoints(s, clients)
        sessions = SessionEndpoints(s, oauth)
        admin = AdminEndpoints(s, clients)
        audit = AuditEndpoints(s)
        self.bulk = bulk = BulkEndpoints(s)
        g = admin.guarded
        routes = [
            Route("/oauth2/token", oauth.token, methods=["POST"]),
            Route("/oauth2/introspect", oauth.introspect, methods=["POST"]),
            Route("/oauth2/revoke", oauth.revoke, methods=["POST"]),
            Route("/.well-known/openid-configuration", oauth.metadata, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", oauth.metadata, methods=["GET"]),
            Route("/.well-known/jwks.json", oauth.jwks, methods=["GET"]),
            Route("/v1/sessions", sessions.create, methods=["POST"]),
            Route("/v1/sessions/current", sessions.end, methods=["DELETE"]),
            Route("/v1/authorize", self.authorize.authorize, methods=["POST"]),
            Route("/oauth2/revoke:bulk", g(bulk.revoke), methods=["POST"]),
            Route("/admin/users:bulk", g(bulk.users), methods=["POST"]),
            Route("/admin/clients:bulk", g(bulk.clients), methods=["POST"]),
            Route("/admin/clients", g(admin.create_client), methods=["POST"]),
            Route("/admin/clients", g(admin.list_clients), methods=["GET"]),
            Route("/admin/clients/{client_id}/disable", g(admin.disable_client), methods=["POST"]),
            Route("/admin/clients/{client_id}", g(admin.delete_client), methods=["DELETE"]),
            Route("/admin/users", g(admin.create_user), methods=["POST"]),
            Route("/admin/users", g(admin.list_users), methods=["GET"]),
            Route("/admin/users/{username}/disable", g(admin.disable_user), methods=["POST"]),
            Route("/admin/users/{username}", g(admin.delete_user), methods=["DELETE"]),
            Route("/admin/audit", g(audit.audit), methods=["GET"]),
            Route("/admin/analytics", g(audit.analytics), methods=["GET"]),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={
                ApiError: api_error_handler,
                HTTPException: http_exception_handler,
                SQLAlchemyError: unavailable_handler,
                RedisError: unavailable_handler,
                ConnectionError: unavailable_handler,
                Exception: internal_error_handler,
            },
            lifespan=self._lifespan,
        )
        app.router.redirect_slashes = False  # a trailing slash is another path: 404, not a bodiless 307
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_ext_authz(scope["path"]):
            await self.ext_authz(scope, receive, send)
        else:
            await self.router(scope, receive, send)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Start and stop the service outside an ASGI server (tests, embedding)."""
        return self._lifespan(self.router)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.service.start()
        if self.authorizer is not None:
            await self.authorizer.start()
        if self.grpc_port is not None:
            self._grpc, self.grpc_bound = await start_grpc_server(
                self.gate,
                host=self.settings.auth_host,
                port=self.grpc_port,
                settings=self.settings,
                authorizer=self.authorizer,
            )
        # What startup made (modules, the app, pools) lives as long as the process: out of the
        # collector's reach, a full collection scans only what requests made since. Measured at
        # 3,000 req/s: full collections of 60-150 ms without this (docs/performance.md, issue 12);
        # and full collections held back (collector.py: the cold gate's memos made them every ~1.3 s).
        collector.settle()
        try:
            yield
        finally:
            if self._grpc is not None:
                await self._grpc.stop(grace=1.0)
            self.bulk.close()
            await self.authorize.aclose()
            if self.authorizer is not None:
                await self.authorizer.stop()
            await self.service.stop()

    async def _healthz(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def _readyz(self, _request: Request) -> Response:
        # Each dependency is checked on its own, concurrently and within READY_CHECK_TIMEOUT, so a frozen
        # Redis or database makes /readyz answer "not ready" promptly instead of hanging the probe;
        # concurrent probes share the check in flight (one pool connection, not one per probe).
        s = self.service
        checks = await self.ready_checks.run({"database": lambda: ping_database(s.engine), "redis": s.redis.ping})
        listener = self.service.listener
        # Revocations are only current while the invalidation stream is read: a replica that lost it
        # misses other replicas' revocations, so it is not ready even if its first snapshot loaded.
        if not listener.synced:
            revocations = "not loaded yet"
        elif not listener.connected:
            revocations = "unavailable: invalidation stream disconnected"
        else:
            revocations = "ok"
        return readiness_response({**checks, "revocations": revocations})

    def _publish_metrics(self) -> None:
        """Copy counts the service keeps itself into metrics (``observability.metrics.publisher``)."""
        v = self.service.verifier
        JWT_CACHE.set(v.cache_hits, "hit")
        JWT_CACHE.set(v.cache_misses, "miss")
        REVOKED_TOKENS.set(len(self.service.denylist))
        INVALIDATION_CONNECTED.labels(stream="invalidations").set(1 if self.service.listener.connected else 0)


def create_app() -> AuthApp:
    """Factory for ``meshauth serve auth`` (granian): settings from the environment."""
    settings = load_settings()
    return AuthApp(settings, grpc_port=settings.grpc_port)
