"""The serving processes' collector settings: start-up frozen, full collections held back — and a
heap that keeps growing (a gate's memos under traffic that never repeats) no longer triggers them."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


_GROWING = """
import gc, sys
from meshauth import collector
if sys.argv[1] == "settled":
    collector.settle()
fulls = 0
def count(phase, info):
    global fulls
    if phase == "stop" and info["generation"] == 2:
        fulls += 1
gc.callbacks.append(count)
kept, young = [], 0
while young < 300:  # generation-0 collections, while long-lived containers pile up (as memo entries do)
    before = gc.get_count()[1]
    kept.append({"scope": [len(kept)]})
    young += gc.get_count()[1] != before
print(fulls)
"""


def _full_collections_while_growing(mode: str) -> int:
    """Full collections in a fresh interpreter (its own small heap, so CPython's rule is predictable)."""
    done = subprocess.run(
        [sys.executable, "-c", _GROWING, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return int(done.stdout)


def test_settle_holds_full_collections_back() -> None:
    assert _full_collections_while_growing("default") > 0  # CPython's default: fulls as the heap grows
    assert _full_collections_while_growing("settled") == 0


@pytest.mark.usefixtures("restored")
def test_settle_keeps_the_young_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    collector.settle()
    assert gc.get_threshold() == (700, 10, collector.FULL_AFTER)


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
