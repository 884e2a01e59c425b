"""Groups of settings that belong to one component, mixed into :class:`meshauth.config.Settings`.

Each group is a plain pydantic model; ``Settings`` inherits its fields, so they are read, checked and
reported (``meshauth config check``) exactly like the others, with the same ``MESHAUTH_`` names. They
live here so that config.py stays one screenful of the core settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from meshauth.config_checks import listen_host_checked


class BatchingSettings(BaseModel):
    # Server-side batching (issue 11). Concurrent single ``evaluation`` requests in one worker are
    # evaluated together (policy/coalescer.py): a lone request (nothing else in progress) is decided in
    # its own task, at once if the worker was idle for policy_coalesce_max_wait, else after one loop
    # turn if nobody came meanwhile; others queue for the next loop turn; while a
    # batch is being evaluated, the next one gathers for at most policy_coalesce_max_wait (s) or
    # policy_coalesce_max_batch requests. Concurrent token-endpoint account and client lookups share
    # one query (auth_lookup_batching_enabled). Bulk admin operations (``/admin/users:bulk``,
    # ``/admin/clients:bulk``, ``/oauth2/revoke:bulk``): at most bulk_max_items items and
    # bulk_max_bytes of body per request; plain passwords are hashed on bulk_hash_processes
    # processes (0: one per core). Coalescing is off by default: it multiplies throughput on the
    # entity-loader path (2.4-4.3x) but gives 1.1-1.2x on the snapshot path most stores take, and its
    # effect on p95 at ~1,000 req/s is below this machine's noise (docs/performance.md, issue 11).
    policy_coalesce_enabled: bool = False
    policy_coalesce_max_batch: int = Field(default=64, ge=1, le=1024)
    policy_coalesce_max_wait: float = Field(default=0.0005, ge=0, le=0.1)
    auth_lookup_batching_enabled: bool = True
    bulk_max_items: int = Field(default=10_000, ge=1, le=1_000_000)
    bulk_max_bytes: int = Field(default=32 * 1_048_576, ge=1024)
    bulk_hash_processes: int = Field(default=0, ge=0, le=256)


class WarmingSettings(BaseModel):
    # Stage, warm, then activate (issue 10; policy/admin.py, policy/staged.py): with Redis,
    # ``POST …/policies/{version}/activate`` announces the version as staged and waits this long
    # (seconds) for clients to warm their caches for it, then activates it; 0: activate at once (cold,
    # as before). Bounded: an activation must not become slow by surprise, and a client that did not
    # warm in time just starts cold. (An upload that is not activated is announced as staged too.)
    policy_warm_window: float = Field(default=0.3, ge=0, le=5)


class MonitoringSettings(BaseModel):
    # Monitoring (issue 13)
    # Log lines: "text" (granian's format and Python's defaults, as before) or "json" (one object per
    # line, with the request's x-request-id and traceparent trace id).
    log_format: Literal["text", "json"] = "text"
    # Where a served process's workers write their metric files (emptied at start); unset: a fresh
    # temporary directory per service process, removed at exit.
    metrics_dir: Path | None = None


class BusSettings(BaseModel):
    # --- message bus (issue 12; meshauth/bus, docs/bus.md) -------------------------------------
    # Audit events published by the services (switchable: off publishes nothing, for measuring).
    audit_enabled: bool = True
    # Streams are split into this many partitions by key hash; each is read by one consumer at a time.
    bus_partitions: int = Field(default=4, ge=1, le=256)
    # Producer: in-process buffer (events). A flush waits flush_interval seconds after the first
    # event of an idle producer, and starts at least flush_gap seconds after the previous flush
    # started (at most 1/flush_gap flushes a second: each is one round trip to Redis whatever its
    # size); flush_batch waiting events are written at once. flush_gap 0: flush_interval alone.
    bus_buffer_events: int = Field(default=100_000, ge=1)
    bus_flush_interval: float = Field(default=0.005, gt=0, le=5)
    bus_flush_gap: float = Field(default=0.05, ge=0, le=5)
    bus_flush_batch: int = Field(default=500, ge=1, le=100_000)
    bus_max_event_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    # Spool for when Redis is unreachable: a directory (default var_dir/bus-spool) and its size limit;
    # 4 GiB holds an hour at 3,000 events/s of ~300 bytes.
    bus_spool_dir: Path | None = None
    bus_spool_max_bytes: int = Field(default=4 * 1024**3, ge=0)
    # Retention: MINID of what every group acknowledged; MAXLEN (approximate) as a safety valve.
    bus_stream_maxlen: int = Field(default=1_000_000, ge=1000)
    # Consumers: claim a dead consumer's messages idle this long (s); dead-letter after max_attempts.
    bus_min_idle: float = Field(default=30.0, gt=0)
    bus_max_attempts: int = Field(default=5, ge=1, le=1000)
    bus_lease_ttl: float = Field(default=10.0, gt=0)
    bus_block: float = Field(default=1.0, gt=0, le=60)
    bus_read_count: int = Field(default=500, ge=1, le=100_000)
    # Drops (buffer and spool full) are counted always and logged at most once per this many seconds.
    bus_drop_log_interval: float = Field(default=10.0, gt=0)
    # Each worker's /metrics (handled, dead-lettered, backlog): the address, and one port per worker
    # (two workers on one host need two); 0: no metrics server.
    worker_metrics_host: Annotated[str, AfterValidator(listen_host_checked)] = "127.0.0.1"  # "": refused
    audit_worker_metrics_port: int = Field(default=9102, ge=0, le=65535)
    analytics_worker_metrics_port: int = Field(default=9103, ge=0, le=65535)
    # --- end message bus ---
