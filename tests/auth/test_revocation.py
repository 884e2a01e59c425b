"""The revocation mirror (``meshauth.auth.revocation.Denylist``): bounded by a sweep on a timer."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from meshauth.auth.revocation import Denylist
from meshauth.redis_client import Keys
from tests.auth.conftest import Harness, claims, sign


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _mirror(redis: Redis, clock: _Clock) -> Denylist:
    return Denylist(redis, Keys("t:"), leeway=5, token_ttl=60, clock=clock)


async def test_sweep_drops_jtis_and_cutoffs_whose_tokens_can_no_longer_verify(redis: Redis) -> None:
    clock = _Clock(1_000_000)
    denylist = _mirror(redis, clock)
    denylist.add_local("old", 1_000_010)
    denylist.add_local("new", 1_000_100)
    denylist.add_cutoff_local("sub:alice", 1_000_000)  # lives token_ttl + leeway = 65 s
    clock.now = 1_000_050
    denylist.sweep()
    assert (len(denylist), denylist.cutoff_count()) == (1, 1)
    clock.now = 1_000_101
    denylist.sweep()
    assert (len(denylist), denylist.cutoff_count()) == (0, 0)


async def test_sweep_forever_sweeps_once_per_interval(redis: Redis) -> None:
    clock = _Clock(1_000_000)
    denylist = _mirror(redis, clock)
    denylist.add_local("j", 1_000_010)
    slept: list[float] = []

    async def tick(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            assert len(denylist) == 0  # swept after the first tick
            raise asyncio.CancelledError
        clock.now += seconds

    with pytest.raises(asyncio.CancelledError):
        await denylist.sweep_forever(30.0, sleep=tick)
    assert slept == [30.0, 30.0]


async def test_the_service_runs_the_sweep_as_a_background_task(auth_sqlite: Harness) -> None:
    assert "denylist-sweep" in {task.get_name() for task in asyncio.all_tasks()}


async def test_revoked_token_stays_refused_through_the_leeway(auth_sqlite: Harness) -> None:
    """A revoked token past its exp but within the leeway is still refused (the denial outlives exp)."""
    h = auth_sqlite
    # Already past exp, still within the leeway (30 s): verifiers accept it, so the denial must hold.
    token = sign(h, claims(h, exp=int(time.time()) - 2))
    identity = await h.app.service.verifier.verify(token)
    await h.app.service.denylist.revoke(identity.jti, identity.exp)
    assert (await h.gate(token)).status_code == 401
    assert await h.app.service.redis.ttl(h.app.service.rkeys.revoked(identity.jti)) > 0
