"""The serving processes' collector settings: start-up frozen, full collections held back — and a
heap that keeps growing (a gate's memos under traffic that never repeats) no longer triggers them."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauth import collector
from meshauth.auth.app import AuthApp
from tests.auth.conftest import make_settings
from tests.policy.conftest import ask, decide, push, running, settings_for


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _full_collections_while_growing(young_collections: int) -> int:
    """Full collections seen while long-lived containers pile up (each survives, as memo entries do)."""
    fulls = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal fulls
        if phase == "stop" and info["generation"] == 2:
            fulls += 1

    kept: list[dict[str, list[int]]] = []
    gc.collect()
    gc.callbacks.append(count)
    try:
        young = 0
        while young < young_collections:
            before = gc.get_count()[1]
            kept.append({"scope": [len(kept)]})
            if gc.get_count()[1] != before:
                young += 1
    finally:
        gc.callbacks.remove(count)
    return fulls


@pytest.mark.usefixtures("restored")
def test_settle_holds_full_collections_back_and_keeps_the_young_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    assert _full_collections_while_growing(300) > 0  # CPython's default: fulls as the heap grows

    collector.settle()
    assert gc.get_threshold() == (700, 10, collector.FULL_AFTER)
    assert _full_collections_while_growing(300) == 0


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_is_alive() -> None:
    alive = [{"startup": True}]
    before = gc.get_freeze_count()
    collector.settle()
    assert gc.get_freeze_count() > before
    assert alive  # still referenced: frozen, not freed


@pytest.mark.usefixtures("restored")
async def test_the_auth_service_settles_once_started(sqlite_url: str, valkey_url: str, tmp_path: Path) -> None:
    gc.set_threshold(700, 10, 10)
    app = AuthApp(make_settings(sqlite_url, valkey_url, tmp_path))
    async with app.running():
        assert gc.get_threshold()[2] == collector.FULL_AFTER


@pytest.mark.usefixtures("restored")
async def test_the_policy_service_settles_once_a_store_is_loaded(sqlite_url: str, tmp_path: Path) -> None:
    async with running(settings_for(sqlite_url, tmp_path)) as (_app, client):
        gc.set_threshold(700, 10, 10)  # start-up may have settled already: activating a version settles again
        await push(client, 'permit(principal, action == Action::"read", resource);')
        answer = await decide(client, ask("User::alice", "read", "Doc::d1"))
        assert answer["decision"] is True
        assert gc.get_threshold()[2] == collector.FULL_AFTER
