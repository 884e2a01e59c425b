"""The auth service's own metrics (``meshauth.auth.metrics``), as ``/metrics`` shows them."""

from __future__ import annotations

import re

import pytest

from meshauth.auth.metrics import gate_outcome
from tests.auth.conftest import PASSWORD, SECRET, Harness, basic


@pytest.mark.parametrize(("status", "outcome"), [(200, "allow"), (401, "deny"), (403, "deny"), (503, "error")])
def test_gate_outcome_classifies_an_ext_authz_status(status: int, outcome: str) -> None:
    assert gate_outcome(status) == outcome


async def _issued(auth: Harness, grant: str) -> float:
    text = (await auth.http.get("/metrics")).text
    found = re.search(rf'^meshauth_tokens_issued_total{{grant="{grant}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_tokens_issued_are_counted_by_grant(auth_sqlite: Harness) -> None:
    auth = auth_sqlite
    await auth.add_client()
    await auth.add_user()
    before = {g: await _issued(auth, g) for g in ("client_credentials", "password", "refresh_token")}
    await auth.token()
    await auth.token()
    password = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    await auth.token(grant_type="refresh_token", refresh_token=password["refresh_token"])
    assert await _issued(auth, "client_credentials") == before["client_credentials"] + 2
    assert await _issued(auth, "password") == before["password"] + 1
    assert await _issued(auth, "refresh_token") == before["refresh_token"] + 1


async def test_a_refused_grant_issues_nothing(auth_sqlite: Harness) -> None:
    auth = auth_sqlite
    await auth.add_client()
    await auth.add_user()
    before = await _issued(auth, "password")
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": "wrong"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert await _issued(auth, "password") == before
