"""POST /oauth2/token: grants, client authentication, and RFC 6749 §5.2 errors."""

from __future__ import annotations

import jwt
import pytest
import sqlalchemy as sa
from redis.exceptions import RedisError

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic


async def test_client_credentials_with_basic_auth(auth: Harness) -> None:
    """client_secret_basic yields an RFC 9068 access token and no refresh token."""
    await auth.add_client()
    body = await auth.token(scope="read")
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "read"
    assert "refresh_token" not in body
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= claims.keys()
    assert claims["sub"] == "svc" and claims["client_id"] == "svc"
    assert claims["exp"] - claims["iat"] == body["expires_in"]


async def test_client_secret_post(auth: Harness) -> None:
    """client_secret_post works as well as Basic."""
    await auth.add_client()
    r = await auth.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "svc", "client_secret": SECRET}
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"


async def test_default_scope_is_everything_allowed(auth: Harness) -> None:
    """Without a scope parameter the token carries the client's whole allowed scope."""
    await auth.add_client()
    assert (await auth.token())["scope"] == "read write"


async def test_scope_beyond_allowed_is_invalid_scope(auth: Harness) -> None:
    """Asking for a scope the client lacks is invalid_scope."""
    await auth.add_client()
    r = await auth.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"}, headers=basic("svc", SECRET)
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


async def test_wrong_secret_is_invalid_client_with_challenge(auth: Harness) -> None:
    """A wrong Basic secret is 401 invalid_client with a Basic challenge."""
    await auth.add_client()
    r = await auth.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("svc", "nope-nope")
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_unknown_client_is_invalid_client(auth: Harness) -> None:
    """An unknown client id fails exactly like a wrong secret."""
    r = await auth.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("ghost", SECRET))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_no_client_authentication(auth: Harness) -> None:
    """No credentials at all is invalid_client."""
    r = await auth.http.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_two_authentication_methods_rejected(auth: Harness) -> None:
    """Basic and client_secret in the body together is invalid_request (RFC 6749 §2.3)."""
    await auth.add_client()
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "svc", "client_secret": SECRET},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
async def test_two_authorization_lines_are_refused(auth_sqlite: Harness, path: str) -> None:
    """Two ``Authorization`` lines are ambiguous credentials: 400 invalid_request, whichever comes
    first (RFC 6749 §2.3: one authentication method per request). The first line used to decide, so
    the right secret followed by another client's (or a wrong one) got a token."""
    h = auth_sqlite
    await h.add_client()
    await h.add_client("other")
    good, bad = basic("svc", SECRET)["authorization"], basic("other", "not-the-secret")["authorization"]
    for lines in ((good, bad), (bad, good), (good, good)):
        r = await h.http.post(
            path,
            content=b"grant_type=client_credentials&token=x",
            headers=[("content-type", "application/x-www-form-urlencoded"), *(("authorization", v) for v in lines)],
        )
        assert r.status_code == 400, (path, r.text)
        assert r.json() == {"error": "invalid_request", "error_description": "more than one Authorization header"}


async def test_unknown_grant_type(auth: Harness) -> None:
    """An unknown grant type is unsupported_grant_type."""
    await auth.add_client()
    r = await auth.http.post("/oauth2/token", data={"grant_type": "urn:evil"}, headers=basic("svc", SECRET))
    assert r.status_code == 400
    assert r.json() == {
        "error": "unsupported_grant_type",
        "error_description": "grant_type 'urn:evil' is not supported",
    }


async def test_missing_grant_type(auth: Harness) -> None:
    """No grant_type is invalid_request."""
    r = await auth.http.post("/oauth2/token", data={}, headers=basic("svc", SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_grant_not_allowed_for_client(auth: Harness) -> None:
    """A client may use only its registered grant types."""
    await auth.add_client(grant_types=("client_credentials",))
    await auth.add_user()
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"


async def test_json_body_is_rejected(auth: Harness) -> None:
    """The token endpoint speaks forms only; JSON is invalid_request."""
    r = await auth.http.post("/oauth2/token", json={"grant_type": "client_credentials"}, headers=basic("svc", SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_malformed_form_body(auth: Harness) -> None:
    """A body that is not valid form encoding is invalid_request, not a 500."""
    for body in (b"grant_type", b"\xff\xfe=\x00", b"a=1&&&b"):
        r = await auth.http.post(
            "/oauth2/token", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 400, body
        assert r.json()["error"] == "invalid_request"


async def test_repeated_parameter(auth: Harness) -> None:
    """A parameter sent twice is invalid_request (RFC 6749 §3.2)."""
    r = await auth.http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials&grant_type=password",
        headers={"content-type": "application/x-www-form-urlencoded", **basic("svc", SECRET)},
    )
    assert r.status_code == 400
    assert "repeated" in r.json()["error_description"]


async def test_oversized_body(auth: Harness) -> None:
    """A body over the limit is 413, refused before it is parsed."""
    r = await auth.http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials&x=" + b"a" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    assert r.json()["error"] == "request_too_large"


async def test_password_grant_issues_refresh_token(auth: Harness) -> None:
    """The password grant returns an access token for the user and a refresh token."""
    await auth.add_client()
    await auth.add_user()
    body = await auth.token(grant_type="password", username="alice", password=PASSWORD, scope="read")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["client_id"] == "svc"
    assert body["refresh_token"]


async def test_password_grant_wrong_password(auth: Harness) -> None:
    """A wrong password is invalid_grant."""
    await auth.add_client()
    await auth.add_user()
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": "wrong-password"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_refresh_rotates(auth: Harness) -> None:
    """A refresh token is single-use: it yields a new access and a new refresh token."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    second = await auth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]


async def test_refresh_reuse_revokes_family(auth: Harness) -> None:
    """Replaying a used refresh token revokes its whole family, including the newest tokens."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    second = await auth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    replay = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    newest = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    assert newest.status_code == 400
    assert (await auth.gate(second["access_token"])).status_code == 401


async def test_refresh_scope_may_narrow_not_widen(auth: Harness) -> None:
    """A refresh may ask for less scope than the original grant, never more."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD, scope="read")
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "scope": "read write"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


async def test_refresh_is_held_to_the_clients_current_scopes(auth: Harness) -> None:
    """A client's scopes narrowed by the admin narrow what its refresh tokens mint: a family kept
    refreshing used to mint the scopes of its first grant for as long as it was refreshed."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    assert first["scope"] == "read write"
    narrowed = {
        "client_id": "svc",
        "client_secret": SECRET,
        "scopes": ["read"],
        "grant_types": ["password", "refresh_token"],
    }
    r = await auth.http.post("/admin/clients:bulk", headers=auth.admin, json=[narrowed])
    assert r.status_code == 200, r.text
    second = await auth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["scope"] == "read"
    assert jwt.decode(second["access_token"], options={"verify_signature": False})["scope"] == "read"
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"], "scope": "write"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


async def test_no_refresh_token_for_a_client_without_the_refresh_grant(auth: Harness) -> None:
    """A client that may not use the refresh_token grant gets no refresh token from the password
    grant: one would lie dormant (and introspect as active) until the grant was added to the client."""
    await auth.add_client("pwonly", grant_types=("password",))
    await auth.add_user()
    body = await auth.token("pwonly", grant_type="password", username="alice", password=PASSWORD)
    assert "refresh_token" not in body
    assert (await auth.gate(body["access_token"])).status_code == 200


async def test_refresh_token_of_another_client(auth: Harness) -> None:
    """A refresh token is bound to the client it was issued to."""
    await auth.add_client("svc")
    await auth.add_client("other")
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("other", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    # The rightful client can still use it: a foreign attempt must not burn it.
    assert (await auth.token(grant_type="refresh_token", refresh_token=first["refresh_token"]))["access_token"]


async def test_unknown_refresh_token(auth: Harness) -> None:
    """An unknown refresh token is invalid_grant."""
    await auth.add_client()
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "x" * 43},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_disabled_client_cannot_get_tokens(auth: Harness) -> None:
    """Disabling a client stops token issuance at once."""
    await auth.add_client()
    await auth.token()
    r = await auth.http.post("/admin/clients/svc/disable", headers=auth.admin)
    assert r.status_code == 200
    r = await auth.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("svc", SECRET))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_empty_parameter_means_omitted(auth_sqlite: Harness) -> None:
    """scope= (no value) is treated as no scope parameter: the default scope (RFC 6749 §3.1)."""
    h = auth_sqlite
    await h.add_client()
    r = await h.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": ""}, headers=basic("svc", SECRET)
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "read write"


async def test_a_user_cannot_sign_in_through_a_client_of_the_same_id(auth: Harness) -> None:
    """A bearer token whose subject is its client id is the client's own (client credentials): the gate asks
    the policy about Client::"alice", not User::"alice". Names are shared between users and clients (a
    409 at creation), but two admins creating both at once can each pass that check; so the password grant
    also refuses a user named like the client it comes through. Through another client the user signs in."""
    await auth.add_client("alice")
    await auth.add_client("svc")
    await auth.add_user("bob")
    # The state such a race leaves: a user row named like the client (bob's row, renamed).
    async with auth.app.service.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE users SET username = 'alice' WHERE username = 'bob'"))
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=basic("alice", SECRET),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    body = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["sub"] == "alice"


@pytest.mark.parametrize(("failing", "nth"), [("stamp", 2), ("unchanged", 1)])  # stamp 1 is the client's
async def test_a_refresh_that_fails_after_spending_its_token_can_be_retried(
    auth: Harness, monkeypatch: pytest.MonkeyPatch, failing: str, nth: int
) -> None:
    """Redis failing after the token was spent (before its successor was stored, or after): the answer is
    a 503, and the client's retry with the same token was a replay that revoked the family — a Redis
    failover logged users out. The token is given back before the 503, and the retry is answered."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    denylist = auth.app.service.denylist
    real = getattr(denylist, failing)
    calls = []

    async def once(*args: object) -> object:
        calls.append(args)
        if len(calls) < nth:
            return await real(*args)
        monkeypatch.setattr(denylist, failing, real)
        raise RedisError("connection lost")

    monkeypatch.setattr(denylist, failing, once)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    r = await auth.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))
    assert r.status_code == 503, r.text
    second = await auth.token(**form)  # the retry: answered, not a replay
    assert (await auth.gate(second["access_token"])).status_code == 200
    third = await auth.token(grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert (await auth.gate(third["access_token"])).status_code == 200
    # Nothing the failed attempt stored can be redeemed: the first token is spent now.
    replay = await auth.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))
    assert replay.status_code == 400
