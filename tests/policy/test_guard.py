"""Protecting the decision API (issue 7 item 15): off by default; with bearer tokens and/or mesh
identities configured, every decision path answers 401 to a caller without a valid credential,
before the body is read."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshauth.config_load import ConfigError, load_settings
from meshauth.policy import guard as guard_module
from meshauth.policy.guard import DecisionGuard, mesh_principals
from meshauth.policy.metrics import DECISION_API_REFUSED
from tests.policy.conftest import ADMIN, ask, push, running, settings_for

TOKENS = ("decision-token-one-0123456789", "decision-token-two-0123456789")
CALLER = "spiffe://cluster.local/ns/shop/sa/orders"
OUR_SIDECAR = "spiffe://cluster.local/ns/meshauth/sa/policy"
PATHS = (
    "/access/v1/evaluation",
    "/access/v1/evaluations",
    "/stores/default/access/v1/evaluation",
    "/stores/default/access/v1/evaluations",
)


def xfcc(uri: str, *, by: str = OUR_SIDECAR) -> str:
    """An element as Istio's sidecar appends it (Subject/URI/DNS set; Subject always quoted)."""
    return f'By={by};Hash=9ba6;Subject="CN=x, O=a;b";URI={uri};DNS=orders.shop.svc'


def body_for(path: str) -> dict[str, Any]:
    one = ask("User:alice", "view", "Doc:d")
    return {"evaluations": [one]} if path.endswith("s") else one


@pytest.fixture
async def protected(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(sqlite_url, tmp_path, decision_api_tokens=list(TOKENS))
    async with running(settings) as (_app, client):
        await push(client, "permit(principal, action, resource);")
        yield client


@pytest.fixture
def mesh(sqlite_url: str, tmp_path: Path) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {"decision_api_allowed_principals": [CALLER], **overrides}
        return running(settings_for(sqlite_url, tmp_path, **values))

    return make


# --- off by default -------------------------------------------------------------------------------


def test_protection_is_off_by_default() -> None:
    """Without settings the decision API stays open (loopback, as before)."""
    settings = load_settings()
    assert settings.decision_api_tokens == ()
    assert settings.decision_api_allowed_principals == ()
    assert DecisionGuard.from_settings(settings) is None


async def test_unprotected_api_answers_without_credentials(client: httpx.AsyncClient) -> None:
    """Protection off: every decision path answers a caller that sends no credential, as today."""
    await push(client, "permit(principal, action, resource);")
    for path in PATHS:
        r = await client.post(path, json=body_for(path))
        assert r.status_code == 200, (path, r.text)


# --- tokens ---------------------------------------------------------------------------------------


async def test_missing_token_is_401_on_every_decision_path(protected: httpx.AsyncClient) -> None:
    """No Authorization: 401, ``www-authenticate: Bearer``, the JSON error contract, on all four paths."""
    for path in PATHS:
        r = await protected.post(path, json=body_for(path))
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer ")
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["error"] == "unauthorized"
        assert "Bearer" in body["error_description"]


async def test_wrong_token_is_invalid_token(protected: httpx.AsyncClient) -> None:
    """A token that is not configured: 401 ``invalid_token`` (and the header says so, RFC 6750 §3),
    counted in ``meshauth_policy_decision_api_refused``."""
    before = DECISION_API_REFUSED.counts[("invalid_token",)]
    for auth in ("Bearer not-a-configured-token-000000", "Basic " + TOKENS[0], "Bearer ", TOKENS[0]):
        r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers={"authorization": auth})
        assert r.status_code == 401, auth
        assert r.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert DECISION_API_REFUSED.counts[("invalid_token",)] == before + 4


async def test_any_configured_token_gets_a_decision(protected: httpx.AsyncClient) -> None:
    """Each configured token (rotation: old and new side by side) is accepted on every path."""
    for token in TOKENS:
        for path in PATHS:
            r = await protected.post(path, json=body_for(path), headers={"authorization": f"bearer {token}"})
            assert r.status_code == 200, (path, r.text)
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers={"authorization": f"Bearer {TOKENS[1]}"})
    assert r.json()["decision"] is True


async def test_refused_before_the_body_is_read(protected: httpx.AsyncClient) -> None:
    """An unauthenticated body over the limit gets the 401, not a 413: the body is never read."""
    r = await protected.post(PATHS[0], content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert r.status_code == 401


async def test_metadata_stays_open(protected: httpx.AsyncClient) -> None:
    """``/.well-known/authzen-configuration`` needs no credential (it is discovery, not decisions)."""
    for path in ("/.well-known/authzen-configuration", "/stores/default/.well-known/authzen-configuration"):
        assert (await protected.get(path)).status_code == 200


async def test_admin_token_is_not_a_decision_token(protected: httpx.AsyncClient) -> None:
    """The admin token opens the admin API only."""
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers=ADMIN)
    assert r.status_code == 401


async def test_two_authorization_lines_are_refused(protected: httpx.AsyncClient) -> None:
    """Two Authorization lines, even if one holds a good token: refused (ambiguous credentials)."""
    headers = [("authorization", f"Bearer {TOKENS[0]}"), ("authorization", f"Bearer {TOKENS[1]}")]
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_request"


async def test_non_ascii_authorization_is_refused(protected: httpx.AsyncClient) -> None:
    """Bytes outside ASCII in the header: 401, not a 500."""
    headers = [(b"authorization", b"Bearer " + TOKENS[0].encode() + b"\xff\xfe")]
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"


async def test_huge_authorization_is_refused_without_hashing(
    protected: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 64 KiB Authorization value is refused on its length, before any comparison."""
    calls: list[int] = []
    real = guard_module.digest

    def counting(credential: str) -> bytes:
        calls.append(len(credential))
        return real(credential)

    monkeypatch.setattr(guard_module, "digest", counting)
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers={"authorization": "Bearer " + "a" * 65_536})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_request"
    assert calls == []


# --- the comparison -------------------------------------------------------------------------------


def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The presented token is compared with every configured token through ``hmac.compare_digest``,
    with no early exit on a match, and as equal-length digests (no length leak)."""
    seen: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    guard = DecisionGuard(tokens=["a" * 20, "b" * 40, "c" * 30], principals=())
    assert guard.check([f"Bearer {'a' * 20}"], []) is None  # matches the first: still compares all three
    assert len(seen) == 3
    assert guard.check(["Bearer nope-nope-nope-nope"], []) is not None
    assert len(seen) == 6
    assert set(seen) == {(32, 32)}


def test_tokens_are_masked_in_settings_repr() -> None:
    """Configured tokens never appear in the settings' repr (logs, ``config check``)."""
    settings = load_settings(decision_api_tokens=list(TOKENS))
    assert TOKENS[0] not in repr(settings)
    assert TOKENS[0] not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision_api_tokens", ["short"]),
        ("decision_api_tokens", ["has a space in it 0123456789"]),
        ("decision_api_tokens", ["non-ascii-tökén-0123456789"]),
        ("decision_api_allowed_principals", ["orders"]),
        ("decision_api_allowed_principals", ["spiffe://cluster.local/ns/a/sa/b;URI=x"]),
    ],
)
def test_bad_settings_are_refused(field: str, value: list[str]) -> None:
    """Guessable or unsendable tokens and principals that are not SPIFFE ids are configuration errors."""
    with pytest.raises(ConfigError, match=field):
        load_settings(**{field: value})


# --- mesh identity (x-forwarded-client-cert) ------------------------------------------------------


def test_mesh_principal_is_the_last_element() -> None:
    """Istio's sidecar appends the caller's verified identity as the last XFCC element; elements
    before it are whatever the caller sent, and quoted values may hold ``,`` and ``;``."""
    assert mesh_principals([xfcc(CALLER)]) == [CALLER]
    forged = xfcc(CALLER, by="spiffe://elsewhere")
    assert mesh_principals([f"{forged},{xfcc('spiffe://cluster.local/ns/x/sa/evil')}"]) == [
        "spiffe://cluster.local/ns/x/sa/evil"
    ]
    assert mesh_principals(['By=x;URI="spiffe://a/b";Subject="a,b;URI=spiffe://c"']) == ["spiffe://a/b"]
    assert mesh_principals(['URI="unterminated']) == []
    assert mesh_principals([]) == []


async def test_allowed_mesh_identity_gets_a_decision(mesh: Callable[..., Any]) -> None:
    """With allowed principals set, a caller whose sidecar-verified SPIFFE id is listed is served."""
    async with mesh() as (_app, client):
        await push(client, "permit(principal, action, resource);")
        for path in PATHS:
            r = await client.post(path, json=body_for(path), headers={"x-forwarded-client-cert": xfcc(CALLER)})
            assert r.status_code == 200, (path, r.text)


async def test_other_or_forged_mesh_identity_is_refused(mesh: Callable[..., Any]) -> None:
    """A caller not listed, one that only forges an earlier element, or none at all: 401."""
    async with mesh() as (_app, client):
        other = xfcc("spiffe://cluster.local/ns/x/sa/other")
        for header in (other, f"{xfcc(CALLER)},{other}", None):
            headers = {"x-forwarded-client-cert": header} if header else {}
            r = await client.post(PATHS[2], json=body_for(PATHS[2]), headers=headers)
            assert r.status_code == 401, header
            assert r.json()["error"] == "unauthorized"
        two = [("x-forwarded-client-cert", xfcc(CALLER)), ("x-forwarded-client-cert", xfcc(CALLER))]
        r = await client.post(PATHS[2], json=body_for(PATHS[2]), headers=two)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_request")


async def test_mesh_header_is_ignored_unless_enabled(protected: httpx.AsyncClient) -> None:
    """With only tokens configured, an XFCC header (anyone can send one) opens nothing."""
    r = await protected.post(PATHS[0], json=body_for(PATHS[0]), headers={"x-forwarded-client-cert": xfcc(CALLER)})
    assert r.status_code == 401


async def test_token_or_mesh_identity_when_both_are_set(mesh: Callable[..., Any]) -> None:
    """Both configured: either credential is enough; a wrong token is refused even from a listed peer."""
    async with mesh(decision_api_tokens=[TOKENS[0]]) as (_app, client):
        await push(client, "permit(principal, action, resource);")
        good_token = {"authorization": f"Bearer {TOKENS[0]}"}
        good_peer = {"x-forwarded-client-cert": xfcc(CALLER)}
        assert (await client.post(PATHS[0], json=body_for(PATHS[0]), headers=good_token)).status_code == 200
        assert (await client.post(PATHS[0], json=body_for(PATHS[0]), headers=good_peer)).status_code == 200
        wrong = {**good_peer, "authorization": "Bearer wrong-wrong-wrong-wrong"}
        assert (await client.post(PATHS[0], json=body_for(PATHS[0]), headers=wrong)).status_code == 401


async def test_starlette_routes_check_too(sqlite_url: str, tmp_path: Path) -> None:
    """The decision routes behind the front (the Starlette app alone) apply the same check."""
    settings = settings_for(sqlite_url, tmp_path, decision_api_tokens=[TOKENS[0]])
    async with running(settings) as (front, _client):
        transport = httpx.ASGITransport(app=front.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as inner:
            for path in PATHS:
                r = await inner.post(path, json=body_for(path))
                assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path
                assert r.headers["www-authenticate"].startswith("Bearer ")
            good = {"authorization": f"Bearer {TOKENS[0]}"}
            assert (await inner.post(PATHS[0], json=body_for(PATHS[0]), headers=good)).status_code == 200


class _RsgiHeaders:
    """Granian's RSGI headers as they behave: ``get_all`` leaves out values that are not visible
    ASCII, while ``in`` still sees the name."""

    def __init__(self, lines: list[tuple[str, bytes]]) -> None:
        self._lines = lines

    def get_all(self, name: str) -> list[str]:
        return [v.decode() for n, v in self._lines if n == name and all(0x20 <= b < 0x7F for b in v)]

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self._lines)


def test_hostile_mesh_headers_are_refused() -> None:
    """Mesh mode: a hidden (non-ASCII) XFCC line under RSGI, two lines, or one over 16 KiB: 401
    ``invalid_request``; a good one passes under both header shapes."""
    guard = DecisionGuard(tokens=(), principals=[CALLER])
    good = xfcc(CALLER).encode()
    assert guard.check_rsgi(_RsgiHeaders([("x-forwarded-client-cert", good)])) is None
    assert guard.check_asgi([(b"x-forwarded-client-cert", good)]) is None
    hidden = _RsgiHeaders([("x-forwarded-client-cert", good + b"\xff")])
    huge = [(b"x-forwarded-client-cert", b"By=x;URI=y," * 2000 + good)]
    two = [(b"x-forwarded-client-cert", good), (b"x-forwarded-client-cert", good)]
    for refused in (guard.check_rsgi(hidden), guard.check_asgi(huge), guard.check_asgi(two)):
        assert refused is not None
        assert (refused.status, refused.error) == (401, "invalid_request")
    non_ascii = guard.check_asgi([(b"x-forwarded-client-cert", xfcc(CALLER + "\xe9").encode("latin-1"))])
    assert non_ascii is not None
    assert non_ascii.error == "unauthorized"


def test_rsgi_hidden_authorization_is_refused() -> None:
    """Token mode under RSGI: an Authorization line whose value granian hides is refused, not
    treated as absent."""
    guard = DecisionGuard(tokens=[TOKENS[0]], principals=())
    refused = guard.check_rsgi(_RsgiHeaders([("authorization", f"Bearer {TOKENS[0]}".encode() + b"\xff")]))
    assert refused is not None
    assert (refused.status, refused.error) == (401, "invalid_request")
