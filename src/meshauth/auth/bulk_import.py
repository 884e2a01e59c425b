"""A bulk of users or clients from start to end: check every item, hash what came in plain (on the
process pool), write the rest in one transaction. Shared by the admin API (``/admin/users:bulk``,
``/admin/clients:bulk``) and the CLI (``meshauth admin users import FILE``).

Atomicity (the default, ``partial=False``): all or none. If any item is refused — it fails
validation, repeats a name, or names an account of the other kind — nothing is written and the
report lists every refusal (``committed: false``). With ``partial=True`` the valid items are
written (one transaction) and the refused ones reported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.auth.bulk import ClientItem, Refusal, UserItem, plan_clients, plan_users
from meshauth.auth.bulk_store import Written, write_clients, write_users
from meshauth.auth.hash_pool import HashPool

__all__ = ["Report", "import_clients", "import_users"]

# (stage, done, total): stage is "hashed" or "written".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Report:
    committed: bool
    created: list[tuple[int, str]]
    updated: list[tuple[int, str]]
    refused: list[Refusal]

    def as_json(self, name_field: str, index_field: str = "index") -> dict[str, Any]:
        return {
            "committed": self.committed,
            "created": [{index_field: i, name_field: name} for i, name in self.created],
            "updated": [{index_field: i, name_field: name} for i, name in self.updated],
            "refused": [{index_field: r.index, "reason": r.reason} for r in self.refused],
        }


async def _hashes(
    pool: HashPool, plain: Sequence[str | None], given: Sequence[str | None], progress: Progress | None
) -> list[str]:
    """The stored hash of each item: ``given`` when it came pre-hashed, else ``plain`` hashed on the pool."""
    todo = [n for n, p in enumerate(plain) if p is not None]
    out = [h or "" for h in given]
    step = pool.processes * 16  # enough per round for every process; progress between rounds
    for start in range(0, len(todo), step):
        part = todo[start : start + step]
        for n, h in zip(part, await pool.hash_many([plain[n] or "" for n in part]), strict=True):
            out[n] = h
        if progress is not None:
            progress("hashed", start + len(part), len(todo))
    return out


def _report(written: Written, refused: list[Refusal]) -> Report:
    every = sorted([*refused, *written.refused], key=lambda r: r.index)
    return Report(written.committed, written.created, written.updated, every)


# Writes the valid items, given their stored hashes and a callback for rows written.
_Write = Callable[[list[str], Callable[[int], None] | None], Awaitable[Written]]


async def _import(
    pool: HashPool,
    refused: list[Refusal],
    secrets: Sequence[tuple[str | None, str | None]],
    write: _Write,
    *,
    partial: bool,
    progress: Progress | None,
) -> Report:
    """The flow both kinds share: refuse all on any refusal (unless partial), hash, write, report.
    ``secrets``: each valid item's (plain, pre-hashed) secret."""
    if refused and not partial:
        return Report(False, [], [], refused)
    hashes = await _hashes(pool, [p for p, _ in secrets], [h for _, h in secrets], progress)
    total = len(secrets)
    written = await write(hashes, None if progress is None else lambda done: progress("written", done, total))
    return _report(written, refused)


async def import_users(
    engine: AsyncEngine,
    pool: HashPool,
    items: Sequence[Any],
    *,
    partial: bool,
    indexes: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> Report:
    valid: list[UserItem]
    valid, refused = plan_users(items, indexes)
    return await _import(
        pool,
        refused,
        [(i.password, i.password_hash) for i in valid],
        lambda hashes, written: write_users(engine, valid, hashes, partial=partial, progress=written),
        partial=partial,
        progress=progress,
    )


async def import_clients(
    engine: AsyncEngine,
    pool: HashPool,
    items: Sequence[Any],
    *,
    partial: bool,
    indexes: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> Report:
    valid: list[ClientItem]
    valid, refused = plan_clients(items, indexes)
    return await _import(
        pool,
        refused,
        [(i.secret, i.secret_hash) for i in valid],
        lambda hashes, written: write_clients(engine, valid, hashes, partial=partial, progress=written),
        partial=partial,
        progress=progress,
    )
