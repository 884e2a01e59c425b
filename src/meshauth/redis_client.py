"""The Redis/Valkey client: one async connection per process, and every key meshauth writes (under the prefix)."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from meshauth.config import Settings

# Hot-path commands are single round trips on loopback or in-cluster; a stuck Redis must not hold a
# request longer than this. Blocking stream readers get their own connection with a longer timeout.
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 1.0


def resolve_redis_url(settings: Settings) -> str | None:
    """The configured URL, or the embedded server's that ``meshauth up`` recorded."""
    if settings.redis_url:
        return settings.redis_url
    try:
        return settings.redis_url_file.read_text().strip() or None
    except OSError:
        return None


def connect(url: str, *, socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT) -> Redis:
    return Redis.from_url(
        url.replace("valkey://", "redis://", 1),
        socket_timeout=socket_timeout,
        socket_connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        health_check_interval=30,
        decode_responses=False,
    )


class Keys:
    """Every Redis key meshauth writes, in one place so prefixes never drift."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.invalidations = f"{prefix}invalidations"

    def revoked(self, jti: str) -> str:
        return f"{self.prefix}revoked:{jti}"

    def cutoff(self, key: str) -> str:
        return f"{self.prefix}cutoff:{key}"

    def generation(self, key: str) -> str:
        return f"{self.prefix}generation:{key}"

    def session(self, session_hash: str) -> str:
        return f"{self.prefix}session:{session_hash}"

    def user_sessions(self, subject: str) -> str:
        return f"{self.prefix}user-sessions:{subject}"

    def throttle(self, kind: str, who: str) -> str:
        return f"{self.prefix}throttle:{kind}:{who}"


async def stop_reader(task: asyncio.Task[None]) -> None:
    """Stop a task that reads from Redis: cancel it until it ends. A reader cancelled while redis-py
    read a reply (after a reconnect) was seen to carry on reading, and a single cancel then waited for
    ever (tests/bus; redis-py #3941 looks like it)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        await task
