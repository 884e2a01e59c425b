"""``meshauth bus status``: every stream of the message bus, read from the configured Redis — or, in
the directory of a ``meshauth up`` stack, from that stack's embedded Valkey (``var/redis-url``)."""

from __future__ import annotations

import asyncio

import typer

from meshauth.bus.status import StreamStatus, collect
from meshauth.config_load import load_settings
from meshauth.redis_client import connect, resolve_redis_url

app = typer.Typer(help="The message bus (Redis Streams).", no_args_is_help=True)


@app.command("status")
def status() -> None:
    """Streams, groups, consumers, lag, pending entries and dead-letter sizes."""
    settings = load_settings()
    url = resolve_redis_url(settings)
    if url is None:
        typer.echo("meshauth bus status: no Redis: set REDIS_URL, or run in the directory of `meshauth up`", err=True)
        raise typer.Exit(1)
    try:
        streams = asyncio.run(_collect(url, settings.redis_prefix))
    except (OSError, ConnectionError) as exc:
        typer.echo(f"meshauth bus status: Redis at {url} unavailable ({exc})", err=True)
        raise typer.Exit(1) from None
    if not streams:
        typer.echo(f"no bus streams in {url} (prefix {settings.redis_prefix!r}) yet")
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
