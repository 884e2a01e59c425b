"""Whatever arrives, every endpoint answers with a 4xx and a machine-readable error: never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.auth.conftest import SECRET, Harness, basic, make_settings, start_harness

FORM_ENDPOINTS = ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"]
JSON_ENDPOINTS = ["/v1/sessions", "/admin/clients", "/admin/users"]


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
async def test_form_endpoints_reject_oversized_and_malformed(auth_sqlite: Harness, path: str) -> None:
    """Each OAuth endpoint refuses oversized, non-form and badly encoded bodies with 4xx JSON."""
    h = auth_sqlite
    await h.add_client()
    cases = [
        (b"token=" + b"a" * 100_000, "application/x-www-form-urlencoded", 413),
        (b'{"token": "x"}', "application/json", 400),
        (b"token=%ZZ%&&=", "application/x-www-form-urlencoded", 400),
        (b"token=\xff\xfe", "application/x-www-form-urlencoded", 400),
        (b"token=a&token=b", "application/x-www-form-urlencoded", 400),
    ]
    for body, ctype, status in cases:
        r = await h.http.post(path, content=body, headers={"content-type": ctype, **basic("svc", SECRET)})
        assert r.status_code == status, (path, body[:20])
        assert r.json()["error"]


async def test_lying_content_length(auth_sqlite: Harness) -> None:
    """A declared Content-Length over the limit is refused before the body is read."""
    r = await auth_sqlite.http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded", "content-length": "999999999"},
    )
    assert r.status_code == 413


@pytest.fixture
async def fuzz_harness(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path):  # type: ignore[no-untyped-def]
    # A generous throttle: the fuzzer is not a guesser.
    settings_ = make_settings(
        sqlite_url, valkey_url, tmp_path, throttle_max_per_address=100_000, throttle_max_per_account=100_000
    )
    async for h in start_harness(settings_):
        await h.add_client()
        yield h


form_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
form_bodies = st.dictionaries(
    st.sampled_from(
        [
            "grant_type",
            "scope",
            "username",
            "password",
            "refresh_token",
            "token",
            "token_type_hint",
            "client_id",
            "client_secret",
            "zzz",
        ]
    ),
    st.one_of(st.sampled_from(["client_credentials", "password", "refresh_token", "", "a.b.c"]), form_values),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(FORM_ENDPOINTS), form=form_bodies, use_basic=st.booleans())
async def test_fuzzed_forms_never_500(fuzz_harness: Harness, path: str, form: dict[str, str], use_basic: bool) -> None:
    """Random forms to the OAuth endpoints: always below 500, always JSON."""
    headers = basic("svc", SECRET) if use_basic else {}
    r = await fuzz_harness.http.post(path, data=form, headers=headers)
    assert r.status_code < 500, r.text
    assert isinstance(r.json(), dict)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(JSON_ENDPOINTS),
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12,
    ),
)
async def test_fuzzed_json_never_500(fuzz_harness: Harness, path: str, body: object) -> None:
    """Random JSON to the JSON endpoints: always below 500."""
    r = await fuzz_harness.http.post(path, json=body, headers=fuzz_harness.admin)
    assert r.status_code < 500, r.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(authorization=st.text(max_size=300), cookie=st.text(max_size=300))
async def test_fuzzed_gate_headers_never_allow(fuzz_harness: Harness, authorization: str, cookie: str) -> None:
    """Random Authorization and Cookie headers are never allowed and never crash the gate."""
    headers: dict[bytes, bytes] = {}
    for name, value in (("authorization", authorization), ("cookie", cookie)):
        raw = value.encode("latin-1", "ignore").replace(b"\r", b"").replace(b"\n", b"").strip()
        if raw:
            headers[name.encode()] = raw
    r = await fuzz_harness.http.get("/ext_authz/x", headers=headers)
    assert r.status_code == 401


async def test_database_down_is_503(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """A write while the database is unreachable is a 503 with a clear error, not a 500."""
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path)):
        await h.add_client()
        token = (await h.token())["access_token"]
        await h.app.service.engine.dispose()
        db_file = Path(sqlite_url.split(":///", 1)[1])
        db_file.unlink()
        db_file.mkdir()  # the path is now a directory: SQLite cannot open it
        r = await h.http.post("/admin/users", headers=h.admin, json={"username": "bob", "password": "longenough"})
        assert r.status_code == 503
        assert r.json()["error"] == "temporarily_unavailable"
        # Tokens already issued keep validating: the hot path needs no database.
        assert (await h.gate(token)).status_code == 200


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
async def test_non_ascii_basic_credentials_are_invalid_client(auth_sqlite: Harness, path: str) -> None:
    """Bytes outside ASCII in ``Authorization: Basic`` are a 401 invalid_client, not a 500."""
    h = auth_sqlite
    await h.add_client()
    for raw in (b"Basic \xff\xfe\xfd", b"Basic c3Zj\xe9", "Basic 名前".encode()):
        r = await h.http.post(
            path,
            content=b"grant_type=client_credentials&token=x",
            headers={b"content-type": b"application/x-www-form-urlencoded", b"authorization": raw},
        )
        assert r.status_code == 401, (path, raw)
        assert r.json()["error"] == "invalid_client"
        assert r.headers["www-authenticate"] == 'Basic realm="meshauth"'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "alice\n"),
        ("username", "alice\r\nx-meshauth-subject: admin"),
        ("username", "ålice"),
        ("username", "名前"),
        ("client_id", "svc\n"),
        ("client_id", "svc\x00"),
        ("client_id", "svc\tx"),
        ("client_id", "süd"),
    ],
)
async def test_admin_api_refuses_names_unsafe_in_headers(auth_sqlite: Harness, field: str, value: str) -> None:
    """Subjects we create are safe header values: control characters and non-ASCII are refused with 400."""
    path = "/admin/users" if field == "username" else "/admin/clients"
    secret = "password" if field == "username" else "client_secret"
    r = await auth_sqlite.http.post(path, headers=auth_sqlite.admin, json={field: value, secret: "longenough"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert field in r.json()["error_description"]


async def test_admin_api_refuses_scopes_unsafe_in_headers(auth_sqlite: Harness) -> None:
    """Scope tokens with control characters or non-ASCII are refused with 400 (RFC 6749 §3.3)."""
    for scope in ("read\r\nx", "réad", "a b", ""):
        body = {"client_id": "svc", "client_secret": "longenough", "scopes": [scope]}
        r = await auth_sqlite.http.post("/admin/clients", headers=auth_sqlite.admin, json=body)
        assert r.status_code == 400, scope


async def test_deeply_nested_json_body(auth_sqlite: Harness) -> None:
    """A JSON body nested past the parser's depth is a 400."""
    body = b"[" * 5000 + b"]" * 5000
    r = await auth_sqlite.http.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
