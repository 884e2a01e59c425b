"""Runs an app factory under granian (Rust HTTP server, uvloop): the lowest-overhead option measured here.

Two interfaces: ASGI, and granian's own RSGI, which reads request bodies natively and measured well
ahead of ASGI for body-reading apps (docs/performance.md). An app object may speak both.
"""

from __future__ import annotations

from typing import Literal

from granian.constants import HTTPModes, Interfaces, Loops
from granian.server import Server

Interface = Literal["asgi", "rsgi"]


def serve(factory: str, *, host: str, port: int, workers: int = 1, interface: Interface = "asgi") -> None:
    """Serve ``module:function`` (an app factory) until interrupted. Blocks."""
    Server(
        factory,
        address=host,
        port=port,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.auto,
        factory=True,
        log_access=False,
        backlog=2048,
        # A worker that dies is replaced rather than leaving the port served by fewer workers.
        respawn_failed_workers=True,
    ).serve()


def serve_asgi(factory: str, *, host: str, port: int, workers: int = 1) -> None:
    serve(factory, host=host, port=port, workers=workers, interface="asgi")
