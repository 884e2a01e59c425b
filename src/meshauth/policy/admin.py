"""Admin operations on policy stores: each validates first, then writes in one transaction, then
makes this process serve the result at once (other replicas follow within the refresh interval).

A policy version is checked completely before anything is written (upload and activation alike):
the limits on nesting and expression size (``source.py``: no engine call yet), then Cedar's syntax
and types, then the very compile a worker runs to serve it (``Registry.compile``). The write and the
activation are one transaction, so an upload either activates a version every worker can serve or
changes nothing. The check runs outside the write transaction (a 10,000-policy store compiles for
seconds; SQLite would be locked meanwhile); if the schema changed in between, it runs again under
the new one inside the transaction.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.policy import cedar, stores
from meshauth.policy.admin_checks import schema_of, validate
from meshauth.policy.announcing import StateAnnouncer
from meshauth.policy.entity_store import delete_entity, find_cycle, parents_of, read_entity, upsert_entities
from meshauth.policy.entity_upload import normalize_upload
from meshauth.policy.errors import bad_request, invalid_policy, invalid_schema, not_found, store_not_found
from meshauth.policy.names import refuse_nul
from meshauth.policy.registry import Registry
from meshauth.policy.servable import Unservable, check_schema_text
from meshauth.policy.source_limits import Limits
from meshauth.policy.state import Compiled

SCHEMA_FORMATS = ("cedar", "json")
Announcer = StateAnnouncer | None


def _schema_key(row: stores.StoreRow) -> tuple[str | None, str | None]:
    return row.schema_text, row.schema_format


class Admin:
    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        *,
        limits: Limits | None = None,
        announcer: Announcer = None,
        warm_window: float = 0.0,
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._announcer = announcer
        self._limits = limits or Limits()
        self._warm_window = warm_window  # policy_warm_window: see activate()

    async def _changed(self, store: str, revision: int, entities_version: int, activated: int | None = None) -> None:
        """After a committed write this worker serves: local workers re-read, clients' caches move."""
        self._registry.announce()
        if self._announcer is not None:
            await self._announcer.changed(store, revision, entities_version, activated=activated)

    async def _stage(self, store: str, version: int, *, wait: bool) -> None:
        """Announce ``version`` as staged, so clients ask their hottest questions of it (staged.py)
        and, when ``wait``, give them the warm window to do so before the activation goes ahead.
        Bounded by the setting; nothing to wait for without Redis or when the announcement failed."""
        if self._announcer is None or self._warm_window <= 0:
            return
        if await self._announcer.staged(store, version) and wait:
            await asyncio.sleep(self._warm_window)  # a replica that did not warm by then starts cold

    async def _check(self, row: stores.StoreRow, text: str) -> Compiled:
        """Everything a version must pass to be written (else a 422 naming what it does not); the
        result is what this worker then serves."""
        try:
            state = await self._registry.compile(row, text)  # the limits first, then the engine
        except Unservable as exc:
            raise invalid_policy(exc.errors, error=exc.error) from None
        await cedar.compile_thread(validate, row, text)
        return Compiled(_schema_key(row), text, state)

    async def _row_to_check(self, store: str) -> stores.StoreRow:
        """The store as it is (read only), or how a store the upload will create starts."""
        async with self._engine.connect() as conn:
            row = await stores.get(conn, store)
        return row or stores.StoreRow(store, 0, None, None, None, 0, False)

    async def _existing(self, conn: Any, store: str) -> stores.StoreRow:
        row = await stores.get(conn, store)
        if row is None:
            raise store_not_found(store)
        return row

    async def create_store(self, store: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            row = await stores.ensure(conn, store)
        await self._registry.reload(store)
        await self._changed(store, row.revision, row.entities_version)
        return _store_json(row)

    async def configure_store(self, store: str, *, attribute_precedence: str) -> dict[str, Any]:
        """Create the store if needed and set its attribute precedence; a change is a new revision
        (nothing cached under the old rule answers for the new one), the same value changes nothing."""
        async with self._engine.begin() as conn:
            await stores.lock(conn, store)
            row = await stores.ensure(conn, store)
            if row.attribute_precedence != attribute_precedence:
                await stores.set_attribute_precedence(conn, store, attribute_precedence)
                row = await self._existing(conn, store)
        await self._registry.reload(store)
        await self._changed(store, row.revision, row.entities_version)
        return _store_json(row)

    async def store_info(self, store: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = await self._existing(conn, store)
        return _store_json(row)

    async def list_stores(self) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            rows = await stores.list_stores(conn)
        names = {r.name for r in rows}
        listed = [_store_json(r) for r in rows]
        if stores.DEFAULT_STORE not in names:
            listed.insert(0, await self.store_info(stores.DEFAULT_STORE))
        return {"stores": listed}

    async def delete_store(self, store: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            await stores.lock(conn, store)
            row = await self._existing(conn, store)
            revision = await stores.delete(conn, store)
        await self._registry.reload(store)
        await self._changed(store, revision, row.entities_version)
        return {"store": store, "deleted": True, "revision": revision}

    async def upload(self, store: str, text: str, *, activate: bool | None, author: str) -> dict[str, Any]:
        """Store a new version (checked); activate it when asked, or when nothing is active yet."""
        refuse_nul("policies", text)
        refuse_nul("author", author)
        checked = await self._row_to_check(store)
        compiled = await self._check(checked, text)
        async with self._engine.begin() as conn:
            await stores.lock(conn, store)
            row = await stores.ensure(conn, store)
            if _schema_key(row) != _schema_key(checked):
                compiled = await self._check(row, text)  # the schema changed meanwhile: check under it
            version = await stores.add_version(conn, store, text, author)
            do_activate = activate if activate is not None else row.active_version is None
            revision = row.revision
            if do_activate:
                revision = await stores.activate(conn, store, version)
        await self._registry.reload(store, compiled if do_activate else None)
        await self._changed(store, revision, row.entities_version)
        if not do_activate:
            await self._stage(store, version, wait=False)  # clients may warm for it ahead of its activation
        return {
            "store": store,
            "version": version,
            "revision": revision,
            "activated": do_activate,
            "active_version": version if do_activate else row.active_version,
        }

    async def activate(self, store: str, version: int) -> dict[str, Any]:
        """Activate a stored version (also a rollback), checked as an upload is: a version an older
        release stored may be over today's limits."""
        async with self._engine.connect() as conn:
            checked = await self._existing(conn, store)
            text = await stores.version_text(conn, store, version)
        if text is None:
            raise not_found(f"store {store!r} has no policy version {version}")
        compiled = await self._check(checked, text)
        # Stage, warm, then activate: clients warm for the version while it is not yet active (the
        # compiled text stays alive meanwhile, so staged evaluations here share this compile).
        await self._stage(store, version, wait=True)
        async with self._engine.begin() as conn:
            await stores.lock(conn, store)  # a deletion or a schema committed after this waits for it
            row = await self._existing(conn, store)
            if await stores.version_text(conn, store, version) != text:
                raise not_found(f"store {store!r} has no policy version {version}")  # deleted meanwhile
            if _schema_key(row) != _schema_key(checked):
                compiled = await self._check(row, text)
            revision, entities_version = await stores.activated(conn, store, version)
        await self._registry.reload(store, compiled)
        await self._changed(store, revision, entities_version, activated=version)
        return {"store": store, "version": version, "revision": revision, "active_version": version}

    async def versions(self, store: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = await self._existing(conn, store)
            rows = await stores.versions(conn, store)
        return {
            "store": store,
            "revision": row.revision,
            "active_version": row.active_version,
            "versions": [v.as_json(row.active_version) for v in rows],
        }

    async def version(self, store: str, version: int) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = await self._existing(conn, store)
            text = await stores.version_text(conn, store, version)
        if text is None:
            raise not_found(f"store {store!r} has no policy version {version}")
        return {"store": store, "version": version, "active": row.active_version == version, "policies": text}

    async def put_schema(self, store: str, text: str, fmt: str) -> dict[str, Any]:
        """Set the schema; refused (422) when it does not parse, is nested past the limit, or the
        active policies break (or could not be served) under it."""
        refuse_nul("schema", text)
        try:
            check_schema_text(text, fmt, self._limits)
        except Unservable as exc:
            raise invalid_schema(f"{fmt} schema: {exc}") from None
        try:
            await cedar.compile_thread(cedar.parse_schema, text, fmt)
        except ValueError as exc:
            raise invalid_schema(f"{fmt} schema does not parse: {exc}") from None
        compiled = None
        async with self._engine.begin() as conn:
            await stores.lock(conn, store)
            row = await stores.ensure(conn, store)
            if row.active_version is not None:
                active = await stores.version_text(conn, store, row.active_version) or ""
                compiled = await self._check(replace(row, schema_text=text, schema_format=fmt), active)
            revision = await stores.set_schema(conn, store, text, fmt)
        await self._registry.reload(store, compiled)
        await self._changed(store, revision, row.entities_version)
        return {"store": store, "revision": revision, "format": fmt}

    async def get_schema(self, store: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = await self._existing(conn, store)
        if row.schema_text is None:
            raise not_found(f"store {store!r} has no schema")
        return {"store": store, "format": row.schema_format, "schema": row.schema_text}

    async def upsert_entities(self, store: str, items: object) -> dict[str, Any]:
        entities = normalize_upload(items)
        async with self._engine.begin() as conn:
            row = await stores.ensure(conn, store)
            schema = await cedar.compile_thread(schema_of, row)
            document = "[" + ",".join(data.decode() for _, data in entities) + "]"
            try:
                await asyncio.to_thread(cedar.parse_entities, document, schema)
            except ValueError as exc:
                raise bad_request("entities", str(exc)) from None
            # Cedar saw this upload alone: a cycle it closes with stored entities is found here,
            # under the store's write lock (taken after the parse, which may take seconds), so two
            # uploads cannot each close half of one.
            await stores.lock(conn, store)
            cycle = await find_cycle(conn, store, {uid: parents_of(data) for uid, data in entities})
            if cycle is not None:
                shown = [f"{t}::{json.dumps(i)}" for t, i in cycle[:8]]  # a long cycle: its start
                chain = " -> ".join(shown) + (" -> …" if len(cycle) > 8 else "")
                raise bad_request("entities", f"the parents would form a cycle with stored entities: {chain}")
            new_version = await upsert_entities(conn, store, entities)
        self._registry.cache_drop(store, [uid for uid, _ in entities], row.entities_version, new_version)
        await self._changed(store, row.revision, new_version)
        return {"store": store, "upserted": len(entities), "entities_version": new_version}

    async def delete_entity(self, store: str, etype: str, eid: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            # The store's lock before the entity's row, as an upload takes them: the other order
            # deadlocked with an upload of the same entity on PostgreSQL (one of the two a 503).
            await stores.lock(conn, store)
            row = await self._existing(conn, store)
            new_version = await delete_entity(conn, store, (etype, eid))
        if new_version is None:
            raise not_found(f"store {store!r} has no entity {etype}::{eid!r}")
        self._registry.cache_drop(store, [(etype, eid)], row.entities_version, new_version)
        await self._changed(store, row.revision, new_version)
        return {"store": store, "deleted": {"type": etype, "id": eid}, "entities_version": new_version}

    async def get_entity(self, store: str, etype: str, eid: str) -> bytes:
        async with self._engine.connect() as conn:
            await self._existing(conn, store)
        data = await read_entity(self._engine, store, (etype, eid))
        if data is None:
            raise not_found(f"store {store!r} has no entity {etype}::{eid!r}")
        return data

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


def _store_json(row: stores.StoreRow) -> dict[str, Any]:
    return {
        "store": row.name,
        "revision": row.revision,
        "active_version": row.active_version,
        "has_schema": row.schema_text is not None,
        "entities_version": row.entities_version,
        "attribute_precedence": row.attribute_precedence,
    }
