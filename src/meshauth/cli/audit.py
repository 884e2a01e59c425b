"""``meshauth audit tail``: follow the audit stream live, one JSON object per line (the shape of
``GET /admin/audit``'s events), from now on. Reads the stream without a group: it takes nothing away
from the workers. A dead letter replayed to its group (``meshauth bus dead-letters replay``: an entry
with the field ``g``) is not shown again: it was shown when it was first published."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

import typer
from redis.exceptions import RedisError

from meshauth.audit.query import to_json
from meshauth.audit.store import as_dict, row
from meshauth.bus.events import MalformedEvent, decode_batch
from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.config_load import load_settings
from meshauth.redis_client import connect, resolve_redis_url

app = typer.Typer(help="The audit trail.", no_args_is_help=True)

BLOCK_MS = 1000


@app.command("tail")
def tail(
    type_: str | None = typer.Option(None, "--type", help="Only events of this type (e.g. gate.decision)."),
    subject: str | None = typer.Option(None, help="Only events of this subject."),
    decision: str | None = typer.Option(None, help="Only allow or deny decisions."),
    count: int = typer.Option(0, min=0, help="Stop after this many events (0: follow until Ctrl-C)."),
) -> None:
    """Follow audit events live as they are published."""
    settings = load_settings()
    url = resolve_redis_url(settings)
    if url is None:
        typer.echo("meshauth audit tail: no Redis: set REDIS_URL, or run in the directory of `meshauth up`", err=True)
        raise typer.Exit(1)
    names = StreamNames(settings.redis_prefix, AUDIT, settings.bus_partitions)
    wanted = {k: v for k, v in (("type", type_), ("subject", subject), ("decision", decision)) if v is not None}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_follow(url, names, wanted, count))


async def _follow(url: str, names: StreamNames, wanted: dict[str, str], count: int) -> None:
    redis = connect(url, socket_timeout=BLOCK_MS / 1000 + 5)
    positions: dict[str, bytes | str] = dict.fromkeys(names.all(), "$")
    shown = 0
    try:
        while True:
            try:
                reply = await redis.xread(cast(Any, positions), block=BLOCK_MS, count=1000)
            except (RedisError, OSError) as exc:
                typer.echo(f"meshauth audit tail: Redis unavailable ({exc}); retrying", err=True)
                await asyncio.sleep(1)
                continue
            for stream, entries in cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply or []):
                for entry_id, fields in entries:
                    positions[stream.decode()] = entry_id
                    if b"g" in fields:  # a dead letter replayed to one group: published before, not new
                        continue
                    try:
                        events = decode_batch(fields.get(b"d", b""))
                    except MalformedEvent:
                        continue
                    for one in events:
                        event = to_json(as_dict(row(one)))
                        if all(event.get(k) == v for k, v in wanted.items()):
                            typer.echo(json.dumps(event, separators=(",", ":")))
                            shown += 1
                            if count and shown >= count:
                                return
    finally:
        await redis.aclose()
