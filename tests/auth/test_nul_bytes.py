"""A NUL character never reaches SQL: PostgreSQL text cannot hold it (the driver fails and the answer
would be a false 503 "backing store down"), SQLite can. Both databases answer the same 4xx instead."""

from __future__ import annotations

import base64

import pytest

from tests.auth.conftest import Harness

OAUTH_ENDPOINTS = ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"]
FORMS = {
    "/oauth2/token": {"grant_type": "client_credentials"},
    "/oauth2/introspect": {"token": "x"},
    "/oauth2/revoke": {"token": "x"},
}


def raw_basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("endpoint", OAUTH_ENDPOINTS)
@pytest.mark.parametrize(("user", "password"), [("de\0mo", "x"), ("svc", "pass\0word-long-enough")])
async def test_nul_in_basic_credentials_is_invalid_client(
    auth: Harness, endpoint: str, user: str, password: str
) -> None:
    """A NUL in the Basic user or password is a 401 invalid_client on both databases, never a 503."""
    await auth.add_client()
    r = await auth.http.post(endpoint, data=FORMS[endpoint], headers=raw_basic(user, password))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/users/al%00ice/disable"),
        ("DELETE", "/admin/users/al%00ice"),
        ("POST", "/admin/clients/de%00mo/disable"),
        ("DELETE", "/admin/clients/de%00mo"),
    ],
)
async def test_nul_in_admin_path_is_400(auth: Harness, method: str, path: str) -> None:
    """An admin path parameter holding a NUL is a 400 invalid_request naming the problem, not a 503."""
    r = await auth.http.request(method, path, headers=auth.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert "NUL" in r.json()["error_description"]


async def test_nul_in_admin_path_still_needs_the_admin_token(auth: Harness) -> None:
    """Without the admin token a NUL path is refused as unauthorized first: nothing is told to a stranger."""
    r = await auth.http.post("/admin/users/al%00ice/disable")
    assert r.status_code == 401, r.text


async def test_nul_in_session_login_is_400(auth: Harness) -> None:
    """A login whose username holds a NUL is refused before the user is looked up."""
    await auth.add_user()
    r = await auth.http.post("/v1/sessions", json={"username": "al\0ice", "password": "whatever-long"})
    assert r.status_code in (400, 401), r.text
    assert r.status_code != 503
