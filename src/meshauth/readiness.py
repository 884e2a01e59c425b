"""``/readyz`` for both services: one answer shape, each dependency checked on its own.

``{"status": "ready" | "not ready", "checks": {name: "ok" | "unavailable: …" | …}}`` with 200 or 503.
Checks run concurrently and each within ``READY_CHECK_TIMEOUT``, so a frozen database or Redis makes
the probe answer "not ready" promptly instead of hanging it. ``/healthz`` (liveness) asks nothing:
a dependency that is down must take a replica out of rotation, not get it restarted.

Concurrent probes in one process share one in-flight check per dependency (``ReadyChecks``, single-
flight): a storm of 100 probes against a healthy database otherwise checked out a pool connection
each (up to 20, the pool's size plus overflow), and against a frozen one opened as many connections
that hung. A probe that joins a check already in flight waits only for the rest of it, so every probe
still answers within ``READY_CHECK_TIMEOUT``. A check out of time is cancelled and left to clean up in
the background; while it still does, further probes of that dependency answer "unavailable" at once
instead of starting another check (against a frozen database each probe period would otherwise leave
one more hung connection and task behind, until the pool ran dry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from meshauth.http import json_response
from meshauth.singleflight import SingleFlight

READY_CHECK_TIMEOUT = 2.0  # seconds; below a typical Kubernetes readiness probe timeout
OK = "ok"
STILL_CLEANING = "unavailable: the previous check is still being cancelled"


_ABANDONED: set[asyncio.Future[object]] = set()  # probes out of time, still cleaning up after cancel


async def ready_check(
    probe: Awaitable[object], abandoned: Callable[[asyncio.Future[object]], None] | None = None
) -> str:
    # Not ``asyncio.wait_for``: it waits for the cancelled probe to finish cancelling, and a query
    # cancelled on a frozen PostgreSQL connection spent another 2 s closing it (probes answered after
    # 4.0 s against the promised 2 s). The cancelled probe finishes in the background instead.
    task = asyncio.ensure_future(probe)
    try:
        done, _ = await asyncio.wait({task}, timeout=READY_CHECK_TIMEOUT)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _ABANDONED.add(task)
        task.add_done_callback(_forget)
        if abandoned is not None:
            abandoned(task)
        return f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"
    try:
        task.result()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready (503), never a 500
        return f"unavailable: {type(exc).__name__}"
    return OK


def _forget(task: asyncio.Future[object]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: whatever the cancelled probe ended with is of no interest now


class ReadyChecks:
    """One in-flight check per dependency name, shared by every probe that asks while it runs."""

    def __init__(self) -> None:
        self._flight: SingleFlight[str, str] = SingleFlight()
        self._cleaning: dict[str, asyncio.Future[object]] = {}  # a timed-out check still cancelling

    async def check(self, name: str, probe: Callable[[], Awaitable[object]]) -> str:
        cleaning = self._cleaning.get(name)
        if cleaning is not None:
            if not cleaning.done():
                return STILL_CLEANING
            del self._cleaning[name]
        return await self._flight.do(name, lambda: ready_check(probe(), lambda task: self._abandoned(name, task)))

    def _abandoned(self, name: str, task: asyncio.Future[object]) -> None:
        self._cleaning[name] = task

    async def run(self, probes: Mapping[str, Callable[[], Awaitable[object]]]) -> dict[str, str]:
        """Every probe concurrently (each shared as ``check`` does): ``{name: "ok" | "unavailable: …"}``."""
        results = await asyncio.gather(*(self.check(name, probe) for name, probe in probes.items()))
        return dict(zip(probes, results, strict=True))


async def ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


def readiness_response(checks: Mapping[str, str], *, optional: Collection[str] = ()) -> Response:
    """Ready when every check but the ``optional`` ones (reported, not required) is ok."""
    ready = all(value == OK for name, value in checks.items() if name not in optional)
    body = {"status": "ready" if ready else "not ready", "checks": dict(checks)}
    return json_response(body, status=200 if ready else 503)
