"""Following other writers between refresh ticks: SQLite file stamps and the host's write signal."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from meshauth.policy.follow import FileStamps, SignalFollower
from meshauth.policy.write_signal import WriteSignal


def test_stamps_say_unchanged_only_after_a_read_saw_them(tmp_path: Path) -> None:
    """The files count as unchanged once a read was made after they were stamped, until a write."""
    path = tmp_path / "db.sqlite"
    db = sqlite3.connect(path)
    db.execute("create table t (x int)")
    db.commit()
    stamps = FileStamps(make_url(f"sqlite+aiosqlite:///{path}"))
    assert not stamps.unchanged()  # never read yet
    stamps.seen(stamps.pending)
    assert stamps.unchanged()
    db.execute("insert into t values (1)")
    db.commit()
    db.close()
    assert not stamps.unchanged()


def test_stamps_never_vouch_for_other_databases() -> None:
    """Only SQLite files can be stamped: other databases are always read."""
    stamps = FileStamps(make_url("postgresql+asyncpg://127.0.0.1/test"))
    stamps.seen(stamps.pending)
    assert not stamps.unchanged()


async def test_a_write_seen_during_a_refresh_gets_its_own_refresh(tmp_path: Path) -> None:
    """A refresh already under way may have read the database before the second write: the worker
    runs another one after it, instead of answering from the first."""
    started: list[int] = []
    changes: list[None] = []
    gate = asyncio.Event()

    async def slow_refresh() -> None:
        started.append(len(started))
        await gate.wait()

    follower = SignalFollower(WriteSignal(tmp_path / "sig"), slow_refresh, lambda: changes.append(None))
    other = WriteSignal(tmp_path / "sig")  # another worker on this host
    other.bump()
    first = asyncio.create_task(follower.follow())
    await asyncio.sleep(0)
    other.bump()  # while the first refresh runs
    second = asyncio.create_task(follower.follow())
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == [0]  # the second waits for the first to end …
    gate.set()
    await asyncio.gather(first, second)
    assert started == [0, 1]  # … then refreshes again
    assert len(changes) == 2  # each announced write also cleared the missing-store memory


async def test_no_announced_write_means_no_refresh(tmp_path: Path) -> None:
    """Without a write announced by another worker, a request does not wait for anything."""
    calls: list[None] = []

    async def refresh() -> None:
        calls.append(None)

    follower = SignalFollower(WriteSignal(tmp_path / "sig"), refresh, lambda: None)
    await follower.follow()
    assert calls == []
