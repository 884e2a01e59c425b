"""A TCP proxy in front of the shared PostgreSQL that a test can freeze (every byte held, nothing
answered: a stopped database, with its connections still open) and thaw."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class FreezableProxy:
    """A TCP proxy in front of PostgreSQL that can freeze (hold every byte, answer nothing — a stopped
    database) and thaw; it counts the connections made through it."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def stop(self) -> None:
        self.thaw()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def freezable(pg_database: str) -> AsyncIterator[tuple[FreezableProxy, str]]:
    proxy = FreezableProxy(5432)
    await proxy.start()
    try:
        url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert url != pg_database
        yield proxy, url
    finally:
        await proxy.stop()
