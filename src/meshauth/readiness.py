"""``/readyz`` for both services: one answer shape, each dependency checked on its own.

``{"status": "ready" | "not ready", "checks": {name: "ok" | "unavailable: …" | …}}`` with 200 or 503.
Checks run concurrently and each within ``READY_CHECK_TIMEOUT``, so a frozen database or Redis makes
the probe answer "not ready" promptly instead of hanging it. ``/healthz`` (liveness) asks nothing:
a dependency that is down must take a replica out of rotation, not get it restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping

import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from meshauth.http import json_response

READY_CHECK_TIMEOUT = 2.0  # seconds; below a typical Kubernetes readiness probe timeout
OK = "ok"


async def ready_check(probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, READY_CHECK_TIMEOUT)
    except TimeoutError:
        return f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"
    except (SQLAlchemyError, RedisError, OSError) as exc:
        return f"unavailable: {type(exc).__name__}"
    return OK


async def ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


def readiness_response(checks: Mapping[str, str], *, optional: Collection[str] = ()) -> Response:
    """Ready when every check but the ``optional`` ones (reported, not required) is ok."""
    ready = all(value == OK for name, value in checks.items() if name not in optional)
    body = {"status": "ready" if ready else "not ready", "checks": dict(checks)}
    return json_response(body, status=200 if ready else 503)
