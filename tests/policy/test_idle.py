"""Idle stores: unloaded after two sweeps without a request, never the default store or a busy one."""

from __future__ import annotations

from meshauth.policy.idle import IdleStores


def test_a_store_goes_after_two_sweeps_unused() -> None:
    """Unused in one sweep it stays; unused in the next too, it goes; a used store stays."""
    idle = IdleStores(sweep_seconds=60)
    idle.used("busy")
    assert idle.sweep(["busy", "idle"], set()) == []
    idle.used("busy")
    assert idle.sweep(["busy", "idle"], set()) == ["idle"]


def test_the_default_store_and_a_store_being_reloaded_stay() -> None:
    """``default`` is never unloaded; a store whose reload holds its lock is kept for now."""
    idle = IdleStores(sweep_seconds=60)
    for _ in range(3):
        assert idle.sweep(["default", "reloading"], {"reloading"}) == []


def test_sweeps_are_off_at_zero_seconds() -> None:
    """``idle_unload_seconds = 0`` turns unloading off: no sweep is ever due."""
    assert not IdleStores(sweep_seconds=0).sweep_due()
