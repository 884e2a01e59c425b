"""The auth service's parts, built once per process from settings and started/stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from ipaddress import ip_network

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.admin_token import read_admin_token
from meshauth.auth import revocation, sessions
from meshauth.auth.accounts import Accounts
from meshauth.auth.audit_hooks import AuthAudit
from meshauth.auth.keys import KeyStore, ensure_key
from meshauth.auth.passwords import Passwords
from meshauth.auth.refresh import RefreshTokens
from meshauth.auth.revocation import Denylist
from meshauth.auth.sessions import SessionStore
from meshauth.auth.throttle import Throttle
from meshauth.auth.tokens import TokenIssuer, TokenVerifier
from meshauth.bus.invalidations import InvalidationListener
from meshauth.bus.producer import Producer, producer_config
from meshauth.config import Settings
from meshauth.db import create_engine
from meshauth.redis_client import Keys, RedisConn, connect, resolve_redis_url

log = logging.getLogger(__name__)

KEYS_KIND = "keys"


def key_overlap(settings: Settings) -> int:
    """Seconds a retired key stays published: its last token's life, the leeway, and one refresh interval
    (a replica that missed the rotation announcement signs with the old key until its next refresh)."""
    return settings.access_token_ttl + settings.leeway + int(settings.key_refresh_interval + 1)


class AuthService:
    def __init__(self, settings: Settings, *, engine: AsyncEngine | None = None, redis_url: str | None = None) -> None:
        url = redis_url or resolve_redis_url(settings)
        if url is None:
            raise RuntimeError("no Redis configured: set REDIS_URL (or run `meshauth up`, which starts one)")
        self.settings = settings
        self.redis_url = url
        self.engine = engine or create_engine(settings.sqlalchemy_url)
        self.redis: RedisConn = connect(url)
        self.rkeys = Keys(settings.redis_prefix)
        self.key_overlap = key_overlap(settings)
        self.keys = KeyStore(self.engine, overlap=self.key_overlap, kek=settings.kek)
        self.issuer = TokenIssuer(
            self.keys, issuer=settings.issuer, audience=settings.audience, ttl=settings.access_token_ttl
        )
        self.verifier = TokenVerifier(
            self.keys,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.leeway,
            max_bytes=settings.max_token_bytes,
            cache_size=settings.jwt_cache_size,
            cache_enabled=settings.jwt_cache_enabled,
        )
        self.denylist = Denylist(self.redis, self.rkeys, leeway=settings.leeway, token_ttl=settings.access_token_ttl)
        self.sessions = SessionStore(
            self.redis,
            self.rkeys,
            idle_timeout=settings.session_idle_timeout,
            absolute_timeout=settings.session_absolute_timeout,
            cache_ttl=settings.session_cache_ttl,
        )
        self.throttle = Throttle(
            self.redis,
            self.rkeys,
            window=settings.throttle_window,
            per_account=settings.throttle_max_per_account,
            per_address=settings.throttle_max_per_address,
            total_window=settings.throttle_total_window,
            per_account_total=settings.throttle_max_per_account_total,
            known_ttl=settings.throttle_known_address_ttl,
            max_known=settings.throttle_max_known_addresses,
            attempt_timeout=settings.throttle_attempt_timeout,
            max_wait=settings.throttle_max_wait,
        )
        self.trusted_proxies = [ip_network(c, strict=False) for c in settings.trusted_proxies]
        self.accounts = Accounts(self.engine, batch_lookups=settings.auth_lookup_batching_enabled)
        self.refresh_tokens = RefreshTokens(self.engine, ttl=settings.refresh_token_ttl)
        self.passwords = Passwords(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            costly_budget_kib=settings.argon2_costly_budget_kib,
        )
        self.admin_token = read_admin_token(settings)
        self.listener = InvalidationListener(url, self.rkeys.invalidations, self._on_invalidation, self._resync)
        self.bus = Producer(url, producer_config(settings)) if settings.audit_enabled else None
        self.audit = AuthAudit(self.bus)
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await ensure_key(self.engine, self.settings.signing_alg, kek=self.settings.kek)
        await self.keys.load()
        _ = self.keys.signer  # no usable active key (all refused): fail start-up clearly, not per request
        await self.listener.start()
        if self.bus is not None:
            await self.bus.start()
        self._tasks.append(asyncio.create_task(self._refresh_keys_forever(), name="key-refresh"))
        sweep = self.denylist.sweep_forever(self.settings.denylist_sweep_interval)
        self._tasks.append(asyncio.create_task(sweep, name="denylist-sweep"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.listener.stop()
        if self.bus is not None:
            await self.bus.stop()  # drains what is buffered
        await self.redis.aclose()
        if self.accounts.loader is not None:
            await self.accounts.loader.aclose()
        await self.engine.dispose()

    def _on_invalidation(self, kind: str, value: str, exp: int) -> None:
        if kind == revocation.KIND:
            self.denylist.add_local(value, exp)
        elif kind == revocation.CUTOFF_KIND:
            self.denylist.add_cutoff_local(value, exp)
        elif kind == sessions.KIND:
            self.sessions.evict_local(value)
        elif kind == KEYS_KIND:
            task = asyncio.create_task(self.keys.load(), name="key-reload")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _resync(self) -> None:
        await self.denylist.snapshot()
        # Logouts missed while disconnected are unknown; drop every cached session rather than guess.
        self.sessions.clear_local()

    async def _refresh_keys_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_refresh_interval)
            try:
                await self.keys.load()
            except Exception:
                log.exception("signing key refresh failed; keeping the current set")
