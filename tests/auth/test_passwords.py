"""Password verification under a budget for imported hashes costlier than the service's own (auth/passwords.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher, Type
from redis.asyncio import Redis

from meshauth.auth.passwords import Passwords, VerifyBusy
from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness
from tests.bus.helpers import until

COSTLY_KIB = 19_456  # phc's floor with t=2: costlier than the 8 KiB the tests hash with, still quick


def _hash(password: str, memory_kib: int, time_cost: int = 2) -> str:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID).hash(password)


@pytest.fixture(scope="module")
def costly() -> str:
    return _hash("right", COSTLY_KIB)


async def _grant(h: Harness, user: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": user, "password": password}
    return await h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))


def _passwords(budget_kib: int) -> Passwords:
    return Passwords(time_cost=1, memory_kib=8, parallelism=1, costly_budget_kib=budget_kib)


async def test_costly_verifications_beyond_the_budget_are_refused_at_once(costly: str) -> None:
    """Two fit the budget and run; the third, started with them, is refused without waiting; once they
    end the budget is whole again."""
    p = _passwords(2 * COSTLY_KIB + 1000)
    results = await asyncio.gather(
        p.verify(costly, "right"), p.verify(costly, "wrong"), p.verify(costly, "right"), return_exceptions=True
    )
    assert results[:2] == [True, False]
    assert isinstance(results[2], VerifyBusy)
    assert p.costly_in_flight_kib == 0
    assert await p.verify(costly, "right") is True


async def test_verifications_at_the_services_own_cost_are_never_refused(costly: str) -> None:
    """The budget is spent on a costly verification: ordinary logins and absent accounts still verify."""
    p = _passwords(COSTLY_KIB)
    own = p.hash("mine")
    results = await asyncio.gather(
        p.verify(costly, "right"), p.verify(own, "mine"), p.verify(None, "x"), p.verify("not a hash", "x")
    )
    assert results == [True, True, False, False]


async def test_a_hash_costlier_than_the_whole_budget_is_refused(costly: str) -> None:
    """Fail closed: a stored hash no budget can hold (written around the import's caps) never runs."""
    with pytest.raises(VerifyBusy):
        await _passwords(COSTLY_KIB - 1).verify(costly, "right")


async def test_a_cancelled_caller_keeps_the_reservation_until_its_hashing_ends(costly: str) -> None:
    """A client that disconnects does not free memory its verification thread still holds."""
    p = _passwords(COSTLY_KIB)
    task = asyncio.create_task(p.verify(costly, "right"))
    await asyncio.sleep(0)  # one turn of the loop, no waiting: the task reserves and starts its hashing
    assert p.costly_in_flight_kib == COSTLY_KIB
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if p.costly_in_flight_kib:  # the thread still runs: the budget is still spent
        with pytest.raises(VerifyBusy):
            await p.verify(costly, "right")
    await until(lambda: p.costly_in_flight_kib == 0, what="the reservation released when the thread ended")
    assert await p.verify(costly, "right") is True


async def test_logins_to_costly_imported_accounts_beyond_the_budget_answer_503(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """End to end: accounts imported at m = 128 MiB + 4 KiB, the budget at its floor (256 MiB): of
    attempts started together (password grant and session login, different accounts, so the guessing
    throttle does not serialize them) no two verify at once; the others are 503
    temporarily_unavailable with retry-after, not queued. A login at the service's own cost is unaffected,
    and once the attempts end a costly account logs in."""
    memory = 128 * 1024 + 4
    settings = make_settings(sqlite_url, valkey_url, tmp_path, argon2_costly_budget_kib=256 * 1024)
    imported = await asyncio.to_thread(_hash, "right", memory, 3)  # t=3: long enough to overlap
    async for h in start_harness(settings):
        await h.add_client("svc")
        await h.add_user("alice")
        items = [{"username": f"big{n}", "password_hash": imported} for n in range(4)]
        r = await h.http.post(
            "/admin/users:bulk", headers={**h.admin, "content-type": "application/json"}, content=json.dumps(items)
        )
        assert r.status_code == 200, r.text
        assert (await _grant(h, "alice", PASSWORD)).status_code == 200  # the client's secret is verified now

        answers = await asyncio.gather(
            _grant(h, "big0", "wrong"),
            _grant(h, "big1", "wrong"),
            _grant(h, "big2", "wrong"),
            h.http.post("/v1/sessions", json={"username": "big3", "password": "wrong"}),
            _grant(h, "alice", PASSWORD),
        )
        *costly, ordinary = answers
        assert ordinary.status_code == 200, ordinary.text
        assert {a.status_code for a in costly} <= {400, 503}, [a.text for a in costly]
        busy = [a for a in costly if a.status_code == 503]
        assert busy, [a.text for a in costly]
        for a in busy:
            assert a.json()["error"] == "temporarily_unavailable"
            assert a.headers["retry-after"] == "1"
        assert h.app.service.passwords.costly_in_flight_kib == 0
        assert (await _grant(h, "big0", "right")).status_code == 200
