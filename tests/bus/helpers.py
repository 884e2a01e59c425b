"""Shared by the bus tests: polling with a deadline (never a bare sleep), a private Valkey that can be
stopped and started again on the same port with its data, and reading a stream back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from meshauth.bus.events import AuditEvent, decode_batch
from meshauth.redis_client import RedisConn
from tests.served import free_port


async def until(condition: Callable[[], bool | Awaitable[bool]], *, within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


def restartable_valkey(factory: Callable[..., Any], data_dir: Path) -> Any:
    """A private Valkey on a fixed port that saves its data on stop and loads it on start."""
    return factory(port=free_port(), persist=True, data_dir=str(data_dir))


Entries = list[tuple[bytes, dict[bytes, bytes]]]


async def entries(redis: RedisConn, key: str) -> Entries:
    """XRANGE with the reply typed as it is with decode_responses=False."""
    return cast(Entries, await redis.xrange(key))


async def read_all(redis: RedisConn, keys: list[str]) -> list[tuple[str, bytes, AuditEvent]]:
    out: list[tuple[str, bytes, AuditEvent]] = []
    for key in keys:
        for entry_id, fields in await entries(redis, key):
            out.extend((key, entry_id, event) for event in decode_batch(fields[b"d"]))
    return out
