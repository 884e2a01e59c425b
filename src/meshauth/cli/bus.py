"""``meshauth bus status``: every stream of the message bus, read from the configured Redis — or, in
the directory of a ``meshauth up`` stack, from that stack's embedded Valkey (``var/redis-url``).
``meshauth bus dead-letters list|replay``: the dead-letter stream, and a replay of its letters to the
group that set them aside (``bus.dead_letters``)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from redis.exceptions import RedisError

from meshauth.bus import dead_letters
from meshauth.bus.status import StreamStatus, collect
from meshauth.bus.streams import AUDIT, GROUPS, StreamNames
from meshauth.config import Settings
from meshauth.config_display import mask_url
from meshauth.config_load import load_settings
from meshauth.redis_client import connect, resolve_redis_url

app = typer.Typer(help="The message bus (Redis Streams).", no_args_is_help=True)
dead = typer.Typer(
    help="The dead-letter stream: list its letters, replay them to the group that set them aside.",
    no_args_is_help=True,
)
app.add_typer(dead, name="dead-letters")
_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
T = TypeVar("T")


@app.command("status")
def status() -> None:
    """Streams, groups, consumers, lag, pending entries and dead-letter sizes."""
    settings = load_settings()
    url = _url(settings, "status")
    streams = _run("status", url, _collect(url, settings.redis_prefix))
    if not streams:
        typer.echo(f"no bus streams in {mask_url(url)} (prefix {settings.redis_prefix!r}) yet")
    for stream in streams:
        _show(stream)


async def _collect(url: str, prefix: str) -> list[StreamStatus]:
    redis = connect(url, socket_timeout=5.0)
    try:
        return await collect(redis, prefix)
    finally:
        await redis.aclose()


def _show(stream: StreamStatus) -> None:
    length = sum(p.length for p in stream.partitions)
    typer.echo(f"stream {stream.name}: {len(stream.partitions)} partitions, {length} entries held")
    for group, (lag, pending) in sorted(stream.group_totals().items()):
        typer.echo(f"  group {group}: lag {'?' if lag is None else lag}, pending {pending}")
        for p in stream.partitions:
            for g in p.groups:
                if g.name != group:
                    continue
                for consumer, (c_pending, idle) in sorted(g.consumers.items()):
                    typer.echo(f"    {p.key}  consumer {consumer}: pending {c_pending}, idle {idle / 1000:.1f}s")
    typer.echo(f"  dead letters: {stream.dead_letters}")


def _url(settings: Settings, command: str) -> str:
    url = resolve_redis_url(settings)
    if url is None:
        typer.echo(
            f"meshauth bus {command}: no Redis: set REDIS_URL, or run in the directory of `meshauth up`", err=True
        )
        raise typer.Exit(1)
    return url


def _run(command: str, url: str, work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except (OSError, RedisError) as exc:  # refused, reset, or silent past the socket timeout (stopped)
        typer.echo(f"meshauth bus {command}: Redis at {mask_url(url)} unavailable ({exc})", err=True)
        raise typer.Exit(1) from None


def _names(settings: Settings, stream: str) -> StreamNames:
    if stream not in GROUPS:
        typer.echo(f"unknown stream {stream!r}: one of {', '.join(sorted(GROUPS))}", err=True)
        raise typer.Exit(2)
    return StreamNames(settings.redis_prefix, stream, settings.bus_partitions)


@dead.command("list")
def dead_list(
    stream: str = typer.Option(AUDIT, help="The logical stream whose dead letters to show."),
    count: int = typer.Option(100, min=1, max=dead_letters.MAX_LIST, help="At most this many, oldest first."),
) -> None:
    """One JSON line per dead letter: its id, original stream, entry, group, error, attempts, events."""
    settings = load_settings()
    url, names = _url(settings, "dead-letters list"), _names(settings, stream)
    letters = _run("dead-letters", url, _read(url, names, count, None))
    for letter in letters:
        typer.echo(json.dumps(letter.as_json()))


@dead.command("replay")
def dead_replay(
    ids: list[str] = typer.Argument(None, help="Dead-letter ids (the `dead_id` of `list`)."),
    every: bool = typer.Option(False, "--all", help="Every dead letter of the stream (up to 10,000)."),
    stream: str = typer.Option(AUDIT, help="The logical stream whose dead letters to replay."),
) -> None:
    """Append each letter's events to its partition again, for its group alone, and delete the letter.

    Letters that cannot be replayed (a payload that does not decode, a stream that is not one of this
    bus's partitions) are named on stderr and left in place; the exit status is then 1."""
    if bool(ids) == every:
        typer.echo("give dead-letter ids, or --all (not both)", err=True)
        raise typer.Exit(2)
    bad = [i for i in ids or [] if not _ENTRY_ID.fullmatch(i)]
    if bad:
        typer.echo(f"not a stream entry id: {bad[0]!r} (expected <ms>-<seq>)", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    url, names = _url(settings, "dead-letters replay"), _names(settings, stream)
    if _run("dead-letters", url, _replay(url, names, ids or None)):
        raise typer.Exit(1)


async def _read(url: str, names: StreamNames, count: int, ids: list[str] | None) -> list[dead_letters.DeadLetter]:
    redis = connect(url, socket_timeout=5.0)
    try:
        return await dead_letters.read(redis, names, count, ids)
    finally:
        await redis.aclose()


async def _replay(url: str, names: StreamNames, ids: list[str] | None) -> int:
    redis = connect(url, socket_timeout=5.0)
    refused = 0
    try:
        letters = await dead_letters.read(redis, names, dead_letters.MAX_LIST, ids)
        found = {letter.dead_id for letter in letters}
        for missing in [i for i in ids or [] if i not in found]:
            typer.echo(f"{missing}: no such dead letter", err=True)
            refused += 1
        for letter in letters:
            reason = dead_letters.refusal(letter, names)
            if reason is not None:
                typer.echo(f"{letter.dead_id}: not replayed: {reason}", err=True)
                refused += 1
                continue
            new_id = await dead_letters.replay(redis, names, letter)
            if new_id is None:
                typer.echo(f"{letter.dead_id}: not replayed: gone meanwhile (replayed by another)", err=True)
                refused += 1
                continue
            typer.echo(f"{letter.dead_id}: replayed to {letter.stream} for group {letter.group} as {new_id.decode()}")
    finally:
        await redis.aclose()
    return refused
