"""The Redis/Valkey client: one async connection per process, and every key meshauth writes (under the prefix).

``connect`` also takes Sentinel and Cluster URLs (``meshauth.redis_urls``): failover is redis-py's own
(``Sentinel.master_for`` asks the Sentinels for the primary on every new connection; ``RedisCluster``
follows MOVED/ASK and refreshes its slot map). In cluster mode every meshauth key carries the prefix's
hash tag (``config_checks.check_cluster_prefix``), so all of them live in one slot: Cluster gives
meshauth failover, not sharding.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeAlias, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError
from redis.typing import EncodableT

from meshauth.config import Settings
from meshauth.redis_urls import Cluster, Sentinels, parse_ha_url

# What ``connect`` returns; code that only issues commands, pipelines and scripts takes either.
RedisConn: TypeAlias = Redis | RedisCluster

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


def connect(url: str, *, socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT) -> RedisConn:
    """A client for ``url`` (checked when settings loaded); nothing is connected until the first command."""
    target = parse_ha_url(url)
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        "decode_responses": False,
    }
    if isinstance(target, Sentinels):
        return _primary_via_sentinels(target, common)
    if isinstance(target, Cluster):
        return _cluster(target, common)
    return Redis.from_url(url.replace("valkey://", "redis://", 1), health_check_interval=30, **common)


class SentinelRedis(Redis):
    """The primary found through Sentinels; closing it also closes the connections to the Sentinels."""

    via: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.via is not None:
            for each in self.via.sentinels:
                await each.aclose()


def _primary_via_sentinels(target: Sentinels, common: dict[str, Any]) -> SentinelRedis:
    # Sentinels are asked briefly and once: one that does not answer is skipped for the next, rather
    # than retried with redis-py's default backoff (seconds per dead Sentinel, on every new connection).
    ask: dict[str, Any] = {
        "socket_timeout": DEFAULT_CONNECT_TIMEOUT,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if target.sentinel_password is not None:
        ask["password"] = target.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts),
        sentinel_kwargs=ask,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        health_check_interval=30,
        **common,
    )
    client = cast(SentinelRedis, sentinel.master_for(target.service, redis_class=SentinelRedis))
    client.via = sentinel
    return client


class MeshRedisCluster(RedisCluster):
    """A cluster client whose failures are ``RedisError``s, as a single server's are.

    redis-py raises ``RedisClusterException`` — not a ``RedisError`` — when no node can be reached
    ("Redis Cluster cannot be connected") or a slot is not covered (mid-failover). Every place
    meshauth fails closed catches ``RedisError``; uncaught, these would be a 500 for a request and the
    end of a reader task. They become ``ConnectionError`` here, in one place."""

    async def initialize(self, *args: Any, **kwargs: Any) -> MeshRedisCluster:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc
        return self

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        # Only the outage: keys in different slots (a key outside the prefix's hash tag) is a bug
        # and stays a RedisClusterException.
        try:
            return await super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as exc:
            raise _unreachable(exc) from exc


def _unreachable(exc: RedisClusterException) -> RedisConnectionError:
    return RedisConnectionError(f"Redis Cluster: {exc}")


def _cluster(target: Cluster, common: dict[str, Any]) -> RedisCluster:
    return MeshRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **common,
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
