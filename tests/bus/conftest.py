"""A TCP proxy in front of the embedded Valkey that a test can cut and restore, to disconnect a
stream reader at a moment of its choosing while the test keeps writing to Valkey directly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CuttableProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut = False
        # Set whenever a client connects while the proxy is cut (and is hung up on at once): the
        # reader has noticed the cut and is trying to come back.
        self.refused = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def sever(self) -> None:
        """Hang up on every connection, and on every new one until ``restore``."""
        self.cut = True
        self.refused.clear()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()

    def restore(self) -> None:
        self.cut = False

    async def stop(self) -> None:
        await self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            self.refused.set()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {writer, up_writer}
        tasks = [asyncio.create_task(_pipe(reader, up_writer)), asyncio.create_task(_pipe(up_reader, writer))]
        self._pipes.update(tasks)
        for task in tasks:
            task.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def cuttable_proxy(valkey_url: str) -> AsyncIterator[CuttableProxy]:
    """A proxy to ``valkey_url``, started in the test's own task. (Started from an async fixture, a
    listener cancelled after a reconnect through it waited on its socket until the proxy stopped;
    started in the test, it does not. Not root-caused.)"""
    port = int(valkey_url.rsplit(":", 1)[1].split("/", 1)[0])
    p = CuttableProxy(port)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
