"""How a worker notices other writers between its refresh ticks: SQLite file stamps (nobody wrote:
skip the query) and the host's write signal (a local worker wrote: refresh before answering)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.engine import URL

from meshauth.policy.write_signal import WriteSignal

log = logging.getLogger(__name__)

Stamp = tuple[int, int] | None


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # Size as well as time: two writes inside one coarse mtime tick still differ in size.
    return st.st_mtime_ns, st.st_size


class FileStamps:
    """For SQLite, whether the database files are as at the last completed check (then nobody wrote).

    Every commit in WAL mode grows or rewrites ``-wal`` (and checkpoints rewrite the main file), so
    two ``stat`` calls replace a query on most ticks. That matters: a query through aiosqlite hops to
    its thread and back, and doing that every 50 ms measurably widened the decision latency tail
    (fixed 1,000 req/s: p95 1.7–2.2 ms with a query per tick, 0.9 ms without).
    """

    def __init__(self, url: URL) -> None:
        database = url.database if url.get_backend_name() == "sqlite" else None
        self._files = [Path(database), Path(f"{database}-wal")] if database and database != ":memory:" else []
        self._seen: tuple[Stamp, ...] | None = None
        self._pending: tuple[Stamp, ...] | None = None

    def unchanged(self) -> bool:
        """True when the files are as last :meth:`seen` (never for other databases)."""
        if not self._files:
            return False
        stamp = tuple(_stamp(f) for f in self._files)
        if stamp == self._seen:
            return True
        self._pending = stamp
        return False

    @property
    def pending(self) -> tuple[Stamp, ...] | None:
        """The stamps the last :meth:`unchanged` saw differ (take them before reading the database)."""
        return self._pending

    def seen(self, stamps: tuple[Stamp, ...] | None) -> None:
        """The database was read after ``stamps`` were taken: later checks compare against them."""
        self._seen = stamps


class SignalFollower:
    """Read-your-writes on one host: when another worker announced a write, the next request
    refreshes before answering (all requests arriving meanwhile wait for the same refresh)."""

    def __init__(
        self, signal: WriteSignal, refresh: Callable[[], Awaitable[None]], on_change: Callable[[], None]
    ) -> None:
        self.signal = signal
        self._refresh = refresh  # a forced refresh of every loaded store
        self._on_change = on_change
        self._following: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        if self.signal.changed():
            self._on_change()
            # A refresh already running may have read the database before this write committed:
            # queue a new one after it rather than wait on it.
            self._following = asyncio.create_task(self._refresh_after(self._following))
        task = self._following
        if task is not None and not task.done():
            try:
                await asyncio.shield(task)
            except Exception:  # the refresh loop retries; serve what is loaded
                log.warning("policy store refresh failed", exc_info=True)

    async def _refresh_after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):  # its waiters log its failure
                await asyncio.shield(previous)
        await self._refresh()
