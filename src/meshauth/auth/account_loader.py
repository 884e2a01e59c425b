"""Account and client rows for the token endpoint, read DataLoader-style (issue 11).

Under concurrent load every token request reads its client row and, for the password and refresh
grants, a user row: one SQL round trip each. Here the names asked for while the event loop turns
are gathered (``meshauth.batching.Batcher``: size, time and idle flush), de-duplicated, read with
one ``IN (…)`` query per kind, and fanned out. A lone lookup goes out on the next loop turn.

What a caller sees does not change: the row as it was when the query ran, which is after the caller
asked (so after any cut-off stamp it read first, see ``revocation.Denylist.stamp``), or None. A name
that no account can have (fails ``NAME_PATTERN``: a NUL, too long) is answered None without a query,
so one hostile name can never fail the query the other requests share. A database failure fails
the lookups of that batch, as each of them would have failed alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.auth.metrics import LOOKUP_BATCH_SIZE
from meshauth.batching import Batcher
from meshauth.db.tables import clients, users

__all__ = ["AccountLoader"]

MAX_BATCH = 256  # names per IN (…): well under the drivers' parameter limits
MAX_WAIT = 0.0005  # seconds a lookup may wait while the previous query of its kind is out


class AccountLoader:
    def __init__(self, engine: AsyncEngine, *, name_ok: Callable[[str], object]) -> None:
        self._engine = engine
        self._name_ok = name_ok
        self._users: Batcher[str, Any] = Batcher(self._read_users, max_batch=MAX_BATCH, max_wait=MAX_WAIT)
        self._clients: Batcher[str, Any] = Batcher(self._read_clients, max_batch=MAX_BATCH, max_wait=MAX_WAIT)
        self.queries = 0  # for tests: SQL round trips made

    async def user(self, username: str) -> Any:
        """The ``users`` row of ``username``, or None."""
        if not self._name_ok(username):
            return None
        return await self._users.submit(username)

    async def client(self, client_id: str) -> Any:
        """The ``clients`` row of ``client_id``, or None."""
        if not self._name_ok(client_id):
            return None
        return await self._clients.submit(client_id)

    async def _read_users(self, names: list[str]) -> Sequence[Any]:
        return await self._read(users.c.username, names, "user")

    async def _read_clients(self, names: list[str]) -> Sequence[Any]:
        return await self._read(clients.c.client_id, names, "client")

    async def _read(self, key: sa.Column[Any], names: list[str], kind: str) -> list[Any]:
        LOOKUP_BATCH_SIZE.labels(kind).observe(len(names))
        self.queries += 1
        unique = list(dict.fromkeys(names))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(key.table).where(key.in_(unique)))).all()
        found = {getattr(r, key.name): r for r in rows}
        return [found.get(name) for name in names]

    async def aclose(self) -> None:
        await self._users.aclose()
        await self._clients.aclose()
