"""Runs an ASGI app factory under granian (Rust HTTP server, uvloop): the lowest-overhead option measured here."""

from __future__ import annotations

from granian.constants import HTTPModes, Interfaces, Loops
from granian.server import Server


def serve_asgi(factory: str, *, host: str, port: int, workers: int = 1) -> None:
    """Serve ``module:function`` (an app factory) until interrupted. Blocks."""
    Server(
        factory,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.auto,
        factory=True,
        log_access=False,
        backlog=2048,
    ).serve()
