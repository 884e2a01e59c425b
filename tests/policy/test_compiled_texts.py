"""Compiled policy texts shared between stores: one compile per (text, schema), decisions per store."""

from __future__ import annotations

import asyncio
import gc

import pytest

from meshauth.policy.compiled_texts import CompiledTexts
from meshauth.policy.servable import Unservable
from meshauth.policy.source_limits import Limits
from meshauth.policy.state import IndexSettings
from tests.policy.conftest import ask, decide, entity, load, push

TEXT = 'permit(principal in Group::"g", action == Action::"view", resource);'
SCHEMA = "entity Group; entity User in [Group]; entity Doc; action view appliesTo { principal: User, resource: Doc };"


def texts() -> CompiledTexts:
    return CompiledTexts(index=IndexSettings(), limits=Limits())


async def test_one_text_is_compiled_once() -> None:
    """Loads of one text under one schema, concurrent or not, compile it once and share the result."""
    cache = texts()
    first = await asyncio.gather(*(cache.get(TEXT, None, None) for _ in range(10)))
    again = await cache.get(TEXT, None, None)
    assert cache.compiles == 1
    assert all(c is again for c in first)


async def test_the_schema_is_part_of_the_key() -> None:
    """The same text under another schema (or none) is compiled on its own: entities parse by it."""
    cache = texts()
    bare = await cache.get(TEXT, None, None)
    typed = await cache.get(TEXT, SCHEMA, "cedar")
    assert bare is not typed
    assert bare.schema is None and typed.schema is not None
    assert cache.compiles == 2


async def test_a_text_no_store_holds_is_compiled_again() -> None:
    """The map keeps nothing alive: once no state holds a compiled text, the next load compiles it."""
    cache = texts()
    held = await cache.get(TEXT, None, None)
    assert len(cache) == 1
    del held
    for _ in range(3):  # loop turns: the loop's own handles on the finished future go
        await asyncio.sleep(0)
    gc.collect()
    assert len(cache) == 0
    await cache.get(TEXT, None, None)
    assert cache.compiles == 2


async def test_a_text_that_cannot_be_served_is_not_remembered() -> None:
    """Every load of a text the engine refuses is refused (Unservable), and nothing is kept."""
    cache = texts()
    for _ in range(2):
        with pytest.raises(Unservable):
            await cache.get("permit(principal, action, resource) when { nope };", None, None)
    assert cache.compiles == 0 and len(cache) == 0


async def test_stores_with_one_text_share_it_and_keep_their_own_entities(make_app) -> None:  # type: ignore[no-untyped-def]
    """Two stores with the same policies share one compiled set in a worker that loads both, and
    each still decides on its own entities."""
    async with make_app() as (_a, writer):
        for store in ("a", "b"):
            await push(writer, TEXT, store=store)
        await load(writer, [entity("User:u", parents=("Group:g",))], store="a")
        await load(writer, [entity("User:u")], store="b")
        async with make_app() as (app, reader):  # a fresh worker: loads both stores on demand
            assert (await decide(reader, ask("User:u", "view", "Doc:d"), store="a"))["decision"] is True
            assert (await decide(reader, ask("User:u", "view", "Doc:d"), store="b"))["decision"] is False
            registry = app.state.api.registry
            a, b = await registry.get("a"), await registry.get("b")
            assert a.index is b.index
            assert (a.revision, a.entities_version) != (0, 0) and a.name == "a" and b.name == "b"
