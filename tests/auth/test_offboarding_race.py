"""Disabling or deleting an account while one of its logins or grants is in flight.

Each test holds a real request (real SQL on SQLite and PostgreSQL, real Valkey) at one step — the
password or secret check, the account read, the credential write — runs the disable or delete to its
end, waits for the next wall-clock second (so a token cut-off by issue time alone cannot cover what is
issued after it), and then lets the request finish. Once the offboarding has returned, nothing that
request issued may work: it is refused, and no cookie, access token or refresh token it could have
handed out passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness


class Pause:
    """Holds the first call of an async method before or after it runs, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str, *, after: bool) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        original: Callable[..., Awaitable[Any]] = getattr(target, name)

        async def held(*args: Any, **kwargs: Any) -> Any:
            first = not self.reached.is_set()
            if first and not after:
                await self._hold()
            result = await original(*args, **kwargs)
            if first and after:
                await self._hold()
            return result

        monkeypatch.setattr(target, name, held)

    async def _hold(self) -> None:
        self.reached.set()
        await asyncio.wait_for(self.release.wait(), timeout=10)


async def next_second() -> None:
    """Wait for the clock's next whole second. Cut-offs and a token's ``iat`` are whole seconds, and a
    credential issued in the cut-off's own second is refused (fail closed): the tests below need the
    credential (or the raced request's end) in a later second. A wait for the clock, not for
    background work; the service reads ``time.time()`` in a dozen places, so no clock is injected."""
    await asyncio.sleep(1.02 - time.time() % 1)


async def race(
    pause: Pause, request: Awaitable[httpx.Response], offboard: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """Start ``request``, offboard while it is held, then let it finish; returns its response."""
    task = asyncio.ensure_future(request)
    reached = asyncio.ensure_future(pause.reached.wait())
    await asyncio.wait({task, reached}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    # Seen once at load 20, unexplained: the held step not reached within 10 s. Say whether the request
    # ended first, and how (a 503 would be a Redis command past the services' 0.5 s, failing closed).
    if not pause.reached.is_set():
        ended = f"{task.result().status_code} {task.result().text}" if task.done() and not task.exception() else task
        task.cancel()
        pytest.fail(f"the held step was not reached within 10 s; the request: {ended}")
    done = await offboard()
    assert done.status_code in (200, 204), done.text
    await next_second()
    pause.release.set()
    return await task


def offboard_user(h: Harness, action: str) -> Callable[[], Awaitable[httpx.Response]]:
    if action == "disable":
        return lambda: h.http.post("/admin/users/alice/disable", headers=h.admin)
    return lambda: h.http.delete("/admin/users/alice", headers=h.admin)


async def nothing_works(h: Harness, response: httpx.Response) -> None:
    """Whatever the raced request handed out is refused everywhere."""
    body = response.json()
    cookie = response.cookies.get("meshauth_session")
    if cookie:
        r = await h.http.get("/ext_authz/", headers={"cookie": f"meshauth_session={cookie}"})
        assert r.status_code == 401, "the raced session passes the gate"
    if body.get("access_token"):
        assert (await h.gate(body["access_token"])).status_code == 401, "the raced access token passes the gate"
    if body.get("refresh_token"):
        r = await h.http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            headers=basic("svc", SECRET),
        )
        assert r.status_code == 400, "the raced refresh token still works"
    sessions = h.app.service.rkeys.session("*")
    assert not await h.app.service.redis.keys(sessions), "a session outlived its user"


# (object on the service, method, hold after it ran?)
SESSION_STEPS = [
    ("passwords", "verify", True),
    ("sessions", "create", False),
    ("sessions", "create", True),
]


@pytest.mark.parametrize("action", ["disable", "delete"])
@pytest.mark.parametrize(("part", "method", "after"), SESSION_STEPS)
async def test_login_in_flight_is_ended_by_offboarding(
    auth: Harness, monkeypatch: pytest.MonkeyPatch, action: str, part: str, method: str, after: bool
) -> None:
    """A POST /v1/sessions held at any step while the user is disabled or deleted is refused, and its
    session and token do not pass the gate."""
    h = auth
    await h.add_user()
    pause = Pause(monkeypatch, getattr(h.app.service, part), method, after=after)
    login = h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    r = await race(pause, login, offboard_user(h, action))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    await nothing_works(h, r)


PASSWORD_GRANT_STEPS = [
    ("passwords", "verify", True),
    ("refresh_tokens", "issue", False),
    ("refresh_tokens", "issue", True),
]


@pytest.mark.parametrize(("part", "method", "after"), PASSWORD_GRANT_STEPS)
async def test_password_grant_in_flight_is_ended_by_disable(
    auth: Harness, monkeypatch: pytest.MonkeyPatch, part: str, method: str, after: bool
) -> None:
    """A password grant held at any step while the user is disabled is refused; its tokens are dead."""
    h = auth
    await h.add_client()
    await h.add_user()
    pause = Pause(monkeypatch, getattr(h.app.service, part), method, after=after)
    grant = h.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=basic("svc", SECRET),
    )
    r = await race(pause, grant, offboard_user(h, "disable"))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    await nothing_works(h, r)


REFRESH_GRANT_STEPS = [
    ("accounts", "get_user", True),
    ("refresh_tokens", "issue", True),
]


@pytest.mark.parametrize(("part", "method", "after"), REFRESH_GRANT_STEPS)
async def test_refresh_grant_in_flight_is_ended_by_disable(
    auth: Harness, monkeypatch: pytest.MonkeyPatch, part: str, method: str, after: bool
) -> None:
    """A refresh grant held after it read the (still enabled) user, or after it stored the successor
    token, is refused once the user is disabled; the successor does not work."""
    h = auth
    await h.add_client()
    await h.add_user()
    first = await h.token(grant_type="password", username="alice", password=PASSWORD)
    pause = Pause(monkeypatch, getattr(h.app.service, part), method, after=after)
    refresh = h.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    r = await race(pause, refresh, offboard_user(h, "disable"))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    await nothing_works(h, r)


@pytest.mark.parametrize("action", ["disable", "delete"])
@pytest.mark.parametrize(("warm", "part", "method"), [(False, "passwords", "verify"), (True, "accounts", "get_client")])
async def test_client_credentials_in_flight_are_ended_by_offboarding(
    auth: Harness, monkeypatch: pytest.MonkeyPatch, action: str, warm: bool, part: str, method: str
) -> None:
    """client_credentials held after the secret check (cold) or the client read (secret remembered)
    while the client is disabled or deleted: refused, and no token it minted passes the gate."""
    h = auth
    await h.add_client()
    if warm:
        await h.token()
    pause = Pause(monkeypatch, getattr(h.app.service, part), method, after=True)
    grant = h.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("svc", SECRET))
    if action == "disable":
        r = await race(pause, grant, lambda: h.http.post("/admin/clients/svc/disable", headers=h.admin))
    else:
        r = await race(pause, grant, lambda: h.http.delete("/admin/clients/svc", headers=h.admin))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    await nothing_works(h, r)


async def test_recreated_user_logs_in_after_delete(auth: Harness) -> None:
    """The race guard refuses only what raced: a user deleted and created again logs in normally."""
    h = auth
    await h.add_user()
    assert (await h.http.delete("/admin/users/alice", headers=h.admin)).status_code == 204
    await h.add_user()
    await next_second()
    r = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 201
    cookie = {"cookie": f"meshauth_session={r.cookies['meshauth_session']}"}
    assert (await h.http.get("/ext_authz/", headers=cookie)).status_code == 200
    assert (await h.gate(r.json()["access_token"])).status_code == 200


async def test_recreated_client_old_secret_not_remembered_elsewhere(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A replica that remembered a client's secret forgets it when the client is deleted and created
    again with another secret on another replica."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for a in start_harness(settings):
        async for b in start_harness(settings):
            await a.add_client()
            assert (await b.token())["access_token"]  # b now remembers SECRET
            assert (await a.http.delete("/admin/clients/svc", headers=a.admin)).status_code == 204
            body = {"client_id": "svc", "client_secret": "another-secret", "grant_types": ["client_credentials"]}
            assert (await a.http.post("/admin/clients", headers=a.admin, json=body)).status_code == 201
            r = await b.http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("svc", SECRET)
            )
            assert r.status_code == 401


async def test_session_escaping_the_index_is_refused_after_cut_off(auth_sqlite: Harness) -> None:
    """Sessions are covered by the subject cut-off as tokens are: one created up to the cut-off second
    that the offboarding's sweep did not see is refused at the gate."""
    h = auth_sqlite
    await h.add_user()
    await next_second()
    assert (await h.http.post("/admin/users/alice/disable", headers=h.admin)).status_code == 200
    new = await h.app.service.sessions.create(subject="alice", scope="session", access_jti="j", access_exp=0)
    r = await h.http.get("/ext_authz/", headers={"cookie": f"meshauth_session={new.session_id}"})
    assert r.status_code == 401
