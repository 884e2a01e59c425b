"""The policy service's ASGI app. ``create_app`` is the zero-argument factory granian serves
(``meshauth serve policy``); it expects a migrated database (``serve`` migrates first).

Errors follow the auth service's contract: ``ApiError`` → its status, a database failure (down,
read-only) → 503 ``temporarily_unavailable``, anything else → the generic JSON 500. Starlette's
outermost error middleware sends that 500 and then re-raises the exception for the server to log;
under RSGI the re-raise escaped ``meshauth.rsgi_bridge.forward`` before it passed the response on, so the
client got an empty 500. ``_Contained`` sits inside it, logs the error once and answers the JSON 500
itself, so nothing is re-raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from meshauth.admin_token import read_admin_token
from meshauth.bus.producer import Producer, producer_config
from meshauth.config import Settings
from meshauth.config_load import load_settings
from meshauth.db import create_engine
from meshauth.http import (
    ApiError,
    api_error_handler,
    http_exception_handler,
    internal_error_handler,
    unavailable_handler,
)
from meshauth.policy.admin import Admin
from meshauth.policy.announcing import StateAnnouncer, following
from meshauth.policy.api import PolicyApi
from meshauth.policy.audit_hooks import PolicyAudit
from meshauth.policy.coalescer import Activity, Coalescer
from meshauth.policy.decision_front import DecisionFront
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_loader import EntityLoader
from meshauth.policy.evaluator import Evaluator
from meshauth.policy.guard import DecisionGuard
from meshauth.policy.registry import Registry
from meshauth.policy.source_limits import Limits
from meshauth.policy.state import IndexSettings
from meshauth.policy.store_gauges import track
from meshauth.redis_client import connect, resolve_redis_url

log = logging.getLogger(__name__)

SIGNAL_FILE = "policy-writes.signal"  # in var_dir, shared by the workers of one host (write_signal.py)


class _Contained:
    """Answer an exception that escaped every handler with the JSON 500 (once nothing was sent),
    log it once, and re-raise nothing (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("policy service request failed: %s %s", scope.get("method"), scope.get("path"))
            if scope["type"] != "http" or started:
                return
            response = await internal_error_handler(Request(scope), RuntimeError())
            await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> DecisionFront:
    settings = settings or load_settings()
    engine = create_engine(settings.sqlalchemy_url)
    cache = EntityCache(max_entries=settings.policy_entity_cache_size, enabled=settings.policy_entity_cache_enabled)
    loader = EntityLoader(
        engine,
        cache,
        ref_depth=settings.policy_entity_ref_depth,
        max_depth=settings.policy_max_hierarchy_depth,
    )
    limits = Limits(max_nesting=settings.policy_max_nesting_depth, max_expression=settings.policy_max_expression_size)
    registry = Registry(
        engine,
        cache,
        index=IndexSettings(
            enabled=settings.policy_index_enabled,
            cache_keys=settings.policy_index_cache_keys,
            min_policies=settings.policy_index_min_policies,
            warm_keys=settings.policy_index_warm_keys,
            warm_seconds=settings.policy_index_warm_seconds,
        ),
        idle_unload_seconds=settings.policy_store_idle_unload_seconds,
        snapshot_max_entities=settings.policy_snapshot_max_entities,
        signal_path=settings.var_dir / SIGNAL_FILE,
        limits=limits,
    )
    track(registry)
    guard = DecisionGuard.from_settings(settings)
    evaluator = Evaluator(loader)
    activity = Activity()  # single evaluations in progress: a lone one is not deferred (coalescer.py)
    coalescer = (
        Coalescer(
            evaluator,
            max_batch=settings.policy_coalesce_max_batch,
            max_wait=settings.policy_coalesce_max_wait,
            activity=activity,
        )
        if settings.policy_coalesce_enabled
        else None
    )
    # With Redis, admin writes announce the new store state to clients' caches, and this worker
    # follows the other replicas' announcements (announcing.py); audit events go to the bus. Without
    # Redis, none of these: the policy service runs without one when none is configured.
    redis_url = resolve_redis_url(settings)
    redis = connect(redis_url) if redis_url else None
    announcer = StateAnnouncer(redis, prefix=settings.redis_prefix) if redis is not None else None
    bus = Producer(redis_url, producer_config(settings)) if redis_url and settings.audit_enabled else None
    api = PolicyApi(
        settings=settings,
        registry=registry,
        evaluator=evaluator,
        admin=Admin(engine, registry, limits=limits, announcer=announcer, warm_window=settings.policy_warm_window),
        admin_token=read_admin_token(settings),
        guard=guard,
        audit=PolicyAudit(bus),
        coalescer=coalescer,
        redis=redis,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if bus is not None:
            await bus.start()
        try:
            async with registry.refreshing(settings.policy_refresh_interval), contextlib.AsyncExitStack() as stack:
                if redis_url is not None:
                    await stack.enter_async_context(
                        following(redis_url, settings.redis_prefix, lambda: registry.refresh(force=True))
                    )
                yield
        finally:
            if bus is not None:
                await bus.stop()  # drains what is buffered
            if coalescer is not None:
                await coalescer.aclose()
            if announcer is not None:
                await announcer.aclose()
            await engine.dispose()

    app = Starlette(
        routes=api.routes(),
        lifespan=lifespan,
        middleware=[Middleware(_Contained)],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_exception_handler,
            SQLAlchemyError: unavailable_handler,
            ConnectionError: unavailable_handler,
            Exception: internal_error_handler,
        },
    )
    # A trailing slash is another path, a 404 like any other: Starlette would answer a bodiless 307 to the
    # path without it, which clients re-send (or drop) as they please, a DELETE included.
    app.router.redirect_slashes = False
    app.state.api = api
    return DecisionFront(
        app,
        evaluation=api.evaluation,
        evaluations=api.evaluations,
        max_body=settings.policy_max_request_bytes,
        max_upload=settings.policy_max_upload_bytes,
        is_admin=api.is_admin,
        guard=guard,
        activity=activity if coalescer is not None else None,
    )
