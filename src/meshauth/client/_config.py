"""Keyword-only, frozen configuration objects with defaults in seconds (and bytes).

Each feature of :class:`PolicyClient` takes one of these; passing ``None`` instead switches the
feature off (to test it alone, and to measure what it buys). Values are checked here, at the edge,
with messages that name the field.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_TIMEOUT",
    "BalanceConfig",
    "BatchConfig",
    "BreakerConfig",
    "CacheConfig",
    "EjectionConfig",
    "PoolConfig",
    "RetryConfig",
    "WarmConfig",
    "check_client_args",
]

# The whole check, queueing and retries included, unless the caller passes its own ``timeout``.
DEFAULT_TIMEOUT = 0.1


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, not {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Concurrent checks go out as one AuthZEN ``evaluations`` call (see ``meshauth.batching``).

    ``max_batch`` items flush at once; while a batch is in flight new checks wait at most
    ``max_wait``; with nothing in flight a check goes out on the next loop turn. ``linger`` (0: off):
    checks that queued behind a batch in flight go out once the first has waited that long, not as
    soon as that batch answers — fewer, bigger calls under load, nothing added at low load.
    """

    max_batch: int = 64
    max_wait: float = 0.002
    linger: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_batch, int) and 1 <= self.max_batch <= 1024):
            raise ValueError(f"max_batch must be an integer in 1..1024 (the service's limit), not {self.max_batch!r}")
        _non_negative("max_wait", self.max_wait)
        _non_negative("linger", self.linger)
        if self.linger > self.max_wait:
            raise ValueError(f"linger must not exceed max_wait ({self.max_wait!r}), not {self.linger!r}")


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    """Closed → open when, over the last ``window`` seconds and at least ``min_calls`` calls, the
    failure share reaches ``failure_rate``; open for ``open_for`` seconds (calls fail fast); then
    half-open: at most ``probes`` calls at a time reach the service, ``probes`` successes close it,
    one failure opens it again.

    ``count``: what the window counts — ``"calls"`` (default: each call to the service is one
    outcome) or ``"checks"`` (a call counts once per check it carried, and ``min_calls`` is then a
    number of checks). A batching client under a stopped service fails few, large calls; counting
    checks opens the breaker as fast whether the checks went out one per call or 64 per call, so
    the batch wait can grow without slowing the breaker (the gate: docs/performance.md, issue 10).
    """

    window: float = 10.0
    min_calls: int = 20
    failure_rate: float = 0.5
    open_for: float = 1.0
    probes: int = 3
    count: Literal["calls", "checks"] = "calls"

    def __post_init__(self) -> None:
        _positive("window", self.window)
        _positive("open_for", self.open_for)
        if not (isinstance(self.min_calls, int) and self.min_calls >= 1):
            raise ValueError(f"min_calls must be an integer >= 1, not {self.min_calls!r}")
        if not (isinstance(self.probes, int) and self.probes >= 1):
            raise ValueError(f"probes must be an integer >= 1, not {self.probes!r}")
        if not (isinstance(self.failure_rate, int | float) and 0 < self.failure_rate <= 1):
            raise ValueError(f"failure_rate must be in (0, 1], not {self.failure_rate!r}")
        if self.count not in ("calls", "checks"):
            raise ValueError(f"count must be 'calls' or 'checks', not {self.count!r}")


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retries spend a budget: every call earns ``ratio`` of a retry, a retry costs one, and at most
    ``max_balance`` can be saved up — so retries add at most ``ratio`` extra load (plus the small
    saved balance), never a storm. A retry is only made while the caller's deadline is ahead, and
    at most ``max_attempts`` attempts (first included) are made per call. ``initial_balance``
    (at most ``max_balance``) is what a new client starts with: 0 by default, so a client that
    fails from its first call adds no retries; a little lets its first reset connection be retried."""

    ratio: float = 0.1
    max_balance: float = 10.0
    max_attempts: int = 2
    initial_balance: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.ratio, int | float) and 0 <= self.ratio <= 1):
            raise ValueError(f"ratio must be in [0, 1], not {self.ratio!r}")
        _non_negative("max_balance", self.max_balance)
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(f"max_attempts must be an integer >= 1, not {self.max_attempts!r}")
        _non_negative("initial_balance", self.initial_balance)
        if self.initial_balance > self.max_balance:
            raise ValueError(f"initial_balance must be <= max_balance, not {self.initial_balance!r}")


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """Decision cache. L1 is in process (``l1_size`` entries); L2 is Redis, used when the client is
    given a Redis connection (``l2_timeout`` bounds each Redis call: a slow Redis is a miss, never a
    failed check). Allows live ``ttl`` seconds, denies ``deny_ttl`` (shorter: a grant that appears
    should show quickly). ``stale_if_error`` > 0 lets a decision that expired less than that long ago
    answer when the service cannot (default 0: off — deny instead)."""

    l1_size: int = 10_000
    ttl: float = 5.0
    deny_ttl: float = 1.0
    stale_if_error: float = 0.0
    l2_prefix: str = "meshauth:decision:"
    l2_timeout: float = 0.02

    def __post_init__(self) -> None:
        if not (isinstance(self.l1_size, int) and self.l1_size >= 1):
            raise ValueError(f"l1_size must be an integer >= 1, not {self.l1_size!r}")
        _positive("ttl", self.ttl)
        _positive("deny_ttl", self.deny_ttl)
        _non_negative("stale_if_error", self.stale_if_error)
        _positive("l2_timeout", self.l2_timeout)


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """The HTTP/1.1 keep-alive pool: at most ``connections`` per client, idle ones kept
    ``keepalive`` seconds; a response body over ``max_response_bytes`` is a failed call.
    ``transport``: whose pool — ``"h1"`` (``H1Transport``, the default for ``http://`` URLs; ~0.4x
    aiohttp's client CPU per call) or ``"aiohttp"`` (``AiohttpTransport``; always for ``https://``)."""

    transport: Literal["h1", "aiohttp"] = "h1"
    connections: int = 64
    # Below the policy service's idle close (http_header_read_timeout, 20 s): the client lets go first,
    # else a call now and then reuses a connection just as the server closes it and fails unanswered.
    keepalive: float = 15.0
    max_response_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.transport not in ("h1", "aiohttp"):
            raise ValueError(f"transport must be 'h1' or 'aiohttp', not {self.transport!r}")
        if not (isinstance(self.connections, int) and self.connections >= 1):
            raise ValueError(f"connections must be an integer >= 1, not {self.connections!r}")
        _positive("keepalive", self.keepalive)
        if not (isinstance(self.max_response_bytes, int) and self.max_response_bytes >= 1024):
            raise ValueError(f"max_response_bytes must be an integer >= 1024, not {self.max_response_bytes!r}")


@dataclass(frozen=True, kw_only=True)
class BalanceConfig:
    """Latency-aware choice among several URLs (peak EWMA, as Finagle and linkerd): each URL's cost
    is its call latency estimate × (outstanding calls + 1), and the cheaper of two random URLs gets
    the call. The estimate jumps to a slower sample at once and forgets with time constant ``decay``
    seconds (also while the URL is not chosen, so a slow one is tried again after a while). Off
    (``None``): least outstanding calls only — which cannot see a slow replica when batching keeps
    calls from overlapping."""

    decay: float = 1.0

    def __post_init__(self) -> None:
        _positive("decay", self.decay)


@dataclass(frozen=True, kw_only=True)
class EjectionConfig:
    """Outlier ejection across several URLs (as Envoy's outlier detection): ``consecutive_failures``
    failed calls in a row eject a URL for ``base_time`` seconds, doubled on each ejection that follows
    within ``max_time`` of the last return, capped at ``max_time``. At most ``max_percent`` of the
    URLs (rounded down) are out at once, and never the last one: with a single URL nothing is ever
    ejected (the breaker covers that case)."""

    consecutive_failures: int = 5
    base_time: float = 1.0
    max_time: float = 30.0
    max_percent: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.consecutive_failures, int) and self.consecutive_failures >= 1):
            raise ValueError(f"consecutive_failures must be an integer >= 1, not {self.consecutive_failures!r}")
        _positive("base_time", self.base_time)
        _positive("max_time", self.max_time)
        if self.max_time < self.base_time:
            raise ValueError("max_time must be >= base_time")
        if not (isinstance(self.max_percent, int | float) and 0 <= self.max_percent <= 1):
            raise ValueError(f"max_percent must be in [0, 1], not {self.max_percent!r}")


@dataclass(frozen=True, kw_only=True)
class WarmConfig:
    """Cache warming. Every ``sample_every``-th check's question is counted (hotness); the counts go
    to a Redis sorted set every ``flush_every`` seconds, trimmed to ``hot_keys`` × 4 members. On
    start (:meth:`PolicyClient.warm`) the ``hot_keys`` hottest questions are read from L2 at the
    store's announced state; on an announced new state the process's ``hot_keys`` hottest questions
    are asked again at it (L2 first) before the client moves to it, for at most ``budget`` seconds —
    so a change causes no cache cliff, and propagates at most ``budget`` later. ``state_prefix`` is
    the announcements' Redis prefix (as :class:`StateFollower`'s ``prefix``).

    Staged warming (``stage``; ``_staging.py``): when the service announces a version as staged
    (before it activates it, ``policy_warm_window``), up to ``stage_keys`` questions — the hot set,
    then what L1 holds at the current state — are asked of that version (L2 first), one batch of
    ``stage_batch`` at a time, for at most ``stage_budget`` seconds; at its activation they fill L1
    at once. (The service's ``policy_warm_window`` should be longer than ``stage_budget``.)"""

    hot_keys: int = 1024
    sample_every: int = 16
    flush_every: float = 1.0
    budget: float = 0.02
    state_prefix: str = "meshauth:"
    stage: bool = True
    stage_keys: int = 16384
    stage_batch: int = 64
    stage_budget: float = 0.25

    def __post_init__(self) -> None:
        if not (isinstance(self.hot_keys, int) and 1 <= self.hot_keys <= 100_000):
            raise ValueError(f"hot_keys must be an integer in 1..100000, not {self.hot_keys!r}")
        if not (isinstance(self.sample_every, int) and self.sample_every >= 1):
            raise ValueError(f"sample_every must be an integer >= 1, not {self.sample_every!r}")
        _positive("flush_every", self.flush_every)
        _positive("budget", self.budget)
        if not (isinstance(self.stage_keys, int) and 1 <= self.stage_keys <= 100_000):
            raise ValueError(f"stage_keys must be an integer in 1..100000, not {self.stage_keys!r}")
        if not (isinstance(self.stage_batch, int) and 1 <= self.stage_batch <= 1024):
            raise ValueError(f"stage_batch must be an integer in 1..1024, not {self.stage_batch!r}")
        _positive("stage_budget", self.stage_budget)


_STORE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}\Z")


def check_client_args(urls: Sequence[str], store: str, token: str | None, timeout: float) -> list[str]:
    """Validate :class:`PolicyClient`'s plain arguments; the URLs without a trailing slash."""
    if isinstance(urls, str) or not urls:
        raise ValueError("urls must be a non-empty list of http:// or https:// base URLs")
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"urls: {url!r} is not an http:// or https:// URL")
        # The decision API takes bearer tokens only (aiohttp would send these as Basic, H1Transport not at all).
        if "@" in urllib.parse.urlsplit(url).netloc:
            raise ValueError(f"urls: {url[:200]!r} holds credentials (user@): give token= instead")
    if len(set(urls)) != len(urls):
        raise ValueError("urls: each URL must be listed once")
    if not isinstance(store, str) or not _STORE.match(store):
        raise ValueError("store must be 1-64 of A-Z a-z 0-9 _ . -, starting alphanumeric")
    if token is not None and not (isinstance(token, str) and _TOKEN.match(token)):
        raise ValueError("token must be 1-512 visible ASCII characters")
    if not (isinstance(timeout, int | float) and 0 < timeout < float("inf")):
        raise ValueError("timeout must be a finite number of seconds > 0")
    return [u.rstrip("/") for u in urls]
