"""Signing keys: rotation with overlap, JWKS contents, discovery metadata, algorithms."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from meshauth.auth import keys
from meshauth.db.tables import signing_keys
from tests.auth.conftest import Harness, claims, make_settings, sign, start_harness


def past_rate_limit(store: keys.KeyStore) -> None:
    """Move the store's clock past the unknown-kid reload rate limit (as if that long had passed)."""
    now = store.clock()
    store.clock = lambda: now + keys.UNKNOWN_KID_RELOAD_INTERVAL


async def test_jwks_publishes_the_signer(auth: Harness) -> None:
    """JWKS holds the active public key, and no private material."""
    body = (await auth.http.get("/.well-known/jwks.json")).json()
    kid = auth.app.service.keys.signer.kid
    assert [k["kid"] for k in body["keys"]] == [kid]
    assert body["keys"][0]["alg"] == "ES256" and body["keys"][0]["use"] == "sig"
    assert "d" not in body["keys"][0]


async def test_tokens_verify_with_published_jwks(auth: Harness) -> None:
    """A third party can verify our tokens with nothing but the JWKS."""
    await auth.add_client()
    token = (await auth.token())["access_token"]
    jwks = (await auth.http.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="meshauth")
    assert claims["client_id"] == "svc"


async def test_rotation_keeps_old_tokens_valid(auth: Harness) -> None:
    """After rotation, tokens from the old key still pass, new tokens use the new key, JWKS has both."""
    await auth.add_client()
    old_token = (await auth.token())["access_token"]
    old_kid = auth.app.service.keys.signer.kid
    new_kid, deleted = await keys.rotate(auth.app.service.engine, "ES256", overlap=auth.app.service.key_overlap)
    assert deleted == []
    await auth.app.service.keys.load()
    assert auth.app.service.keys.signer.kid == new_kid
    new_token = (await auth.token())["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    auth.app.service.verifier.evict(old_token)
    assert (await auth.gate(old_token)).status_code == 200
    assert (await auth.gate(new_token)).status_code == 200
    kids = {k["kid"] for k in (await auth.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {old_kid, new_kid}


async def test_expired_keys_leave_jwks(auth: Harness) -> None:
    """A key retired longer ago than the token lifetime is unpublished and deleted on the next rotation."""
    engine = auth.app.service.engine
    old_kid = auth.app.service.keys.signer.kid
    await keys.rotate(engine, "ES256", overlap=auth.app.service.key_overlap)
    long_ago = int(time.time()) - auth.app.service.key_overlap - 10
    async with engine.begin() as conn:
        await conn.execute(signing_keys.update().where(signing_keys.c.kid == old_kid).values(retired_at=long_ago))
    await auth.app.service.keys.load()
    kids = {k["kid"] for k in (await auth.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert old_kid not in kids
    _, deleted = await keys.rotate(engine, "ES256", overlap=auth.app.service.key_overlap)
    assert old_kid in deleted
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).where(signing_keys.c.kid == old_kid)) == 0


async def test_other_replica_rotation_found_by_unknown_kid(auth: Harness) -> None:
    """A token signed with a key this replica has not loaded yet triggers a (rate-limited) reload."""
    await auth.add_client()
    new_kid, _ = await keys.rotate(auth.app.service.engine, "ES256", overlap=auth.app.service.key_overlap)
    other = keys.KeyStore(auth.app.service.engine, overlap=auth.app.service.key_overlap)
    await other.load()
    token = jwt.encode(
        {
            "iss": auth.app.settings.issuer,
            "sub": "x",
            "aud": "meshauth",
            "exp": int(time.time()) + 60,
            "iat": int(time.time()),
            "jti": "j1",
            "client_id": "svc",
            "scope": "",
        },
        other.signer.private_key,
        algorithm="ES256",
        headers={"kid": new_kid, "typ": "at+jwt"},
    )
    past_rate_limit(auth.app.service.keys)
    assert (await auth.gate(token)).status_code == 200


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_configurable_algorithms(
    alg: str, sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """EdDSA and RS256 sign and verify end to end."""
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path, signing_alg=alg)):
        await h.add_client()
        token = (await h.token())["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == alg
        assert (await h.gate(token)).status_code == 200


async def test_metadata(auth: Harness) -> None:
    """RFC 8414 metadata names every endpoint under the issuer."""
    body = (await auth.http.get("/.well-known/openid-configuration")).json()
    iss = auth.app.settings.issuer
    assert body["issuer"] == iss
    assert body["token_endpoint"] == f"{iss}/oauth2/token"
    assert body["jwks_uri"] == f"{iss}/.well-known/jwks.json"
    assert body["introspection_endpoint"] == f"{iss}/oauth2/introspect"
    assert body["revocation_endpoint"] == f"{iss}/oauth2/revoke"
    assert set(body["grant_types_supported"]) == {"client_credentials", "password", "refresh_token"}
    assert body["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]


async def test_keys_encrypted_at_rest(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """With a key-encryption key, the database holds only encrypted PEMs, and tokens still verify."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, key_encryption_key="kek-from-a-k8s-secret")
    async for h in start_harness(settings):
        await h.add_client()
        assert (await h.gate((await h.token())["access_token"])).status_code == 200
        async with h.app.service.engine.connect() as conn:
            pems = (await conn.execute(sa.select(signing_keys.c.private_pem))).scalars().all()
        assert pems and all(p.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for p in pems)
    # Without the key-encryption key the service refuses to start rather than run without keys.
    with pytest.raises(RuntimeError, match="MESHAUTH_KEY_ENCRYPTION_KEY"):
        async for _ in start_harness(make_settings(sqlite_url, valkey_url, tmp_path)):
            pass
    # With a different key-encryption key (a rotated Secret): the same clear start-up error, no traceback
    # from deep inside the PEM loader and no new key minted past the unreadable one.
    wrong = make_settings(sqlite_url, valkey_url, tmp_path, key_encryption_key="another-secret")
    with pytest.raises(RuntimeError, match="wrong MESHAUTH_KEY_ENCRYPTION_KEY"):
        async for _ in start_harness(wrong):
            pass


async def test_forged_kids_cause_one_reload(auth_sqlite: Harness) -> None:
    """Many concurrent unknown kids trigger one key-table reload, not one each."""
    h = auth_sqlite
    store = h.app.service.keys
    past_rate_limit(store)
    before = store.table_reads
    tokens = [sign(h, claims(h), kid=f"forged{i:04d}") for i in range(50)]
    responses = await asyncio.gather(*(h.gate(t) for t in tokens))
    assert {r.status_code for r in responses} == {401}
    assert store.table_reads == before + 1


async def test_unknown_kids_reload_at_most_once_per_interval(auth_sqlite: Harness) -> None:
    """Within the rate limit an unknown kid does not read the key table again; once it has passed, one does."""
    store = auth_sqlite.app.service.keys
    clock = [store.clock()]
    store.clock = lambda: clock[0]
    past = keys.UNKNOWN_KID_RELOAD_INTERVAL
    clock[0] += past
    assert await store.reload_for_unknown_kid() is True
    reads = store.table_reads
    clock[0] += past / 2
    assert await store.reload_for_unknown_kid() is False
    assert store.table_reads == reads
    clock[0] += past / 2
    assert await store.reload_for_unknown_kid() is True
    assert store.table_reads == reads + 1


async def test_forged_kid_with_database_down_is_401(auth_sqlite: Harness) -> None:
    """With the database gone, an unknown kid is still a plain 401 (no 500)."""
    h = auth_sqlite
    await h.app.service.engine.dispose()
    db = Path(h.app.settings.sqlalchemy_url.split(":///", 1)[1])
    db.unlink()
    db.mkdir()
    past_rate_limit(h.app.service.keys)
    r = await h.gate(sign(h, claims(h), kid="forgedkid"))
    assert r.status_code == 401


async def test_rotation_announcement_reaches_running_replica(auth_sqlite: Harness) -> None:
    """A 'keys' invalidation makes a running replica load the new signer without waiting for its timer."""
    h = auth_sqlite
    from meshauth.auth.service import KEYS_KIND
    from meshauth.bus.invalidations import publish

    new_kid, _ = await keys.rotate(h.app.service.engine, "ES256", overlap=h.app.service.key_overlap)
    await publish(h.app.service.redis, h.app.service.rkeys.invalidations, KEYS_KIND, new_kid)
    deadline = time.monotonic() + 2
    while h.app.service.keys.signer.kid != new_kid:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def _insert_row(h: Harness, kid: str, alg: str, pem: str, jwk: dict[str, object]) -> None:
    async with h.app.service.engine.begin() as conn:
        await conn.execute(
            signing_keys.insert().values(
                kid=kid, alg=alg, private_pem=pem, public_jwk=jwk, created_at=0, retired_at=int(time.time())
            )
        )


async def test_tampered_key_row_is_refused_not_a_500(auth_sqlite: Harness) -> None:
    """A key row that is garbage (truncated PEM, or alg that is not its key's) is refused, never a 500:
    a token naming it is a 401, and the row does not stop the other keys from loading."""
    from cryptography.hazmat.primitives import serialization

    h = auth_sqlite
    good = keys.generate_private_key("ES256")
    pem = good.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    await _insert_row(h, "truncatedkid", "ES256", pem[:80], {"kty": "EC"})
    await _insert_row(h, "wrongalgkid", "RS256", pem, keys.public_jwk("RS256", "wrongalgkid", good.public_key()))
    for kid in ("truncatedkid", "wrongalgkid"):
        past_rate_limit(h.app.service.keys)
        r = await h.gate(sign(h, claims(h), kid=kid))
        assert r.status_code == 401, (kid, r.status_code, r.text)
    assert h.app.service.keys.get("wrongalgkid") is None
    await h.app.service.keys.load()  # a reload still works: the bad rows are skipped
    kids = {k["kid"] for k in (await h.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert h.app.service.keys.signer.kid in kids
    assert not kids & {"truncatedkid", "wrongalgkid"}


async def test_published_jwk_is_derived_from_the_private_key(auth_sqlite: Harness) -> None:
    """A public_jwk column that does not match the private key is never published (it would let whoever
    wrote it mint tokens that relying parties accept)."""
    from cryptography.hazmat.primitives import serialization

    h = auth_sqlite
    real = keys.generate_private_key("ES256")
    other = keys.generate_private_key("ES256")
    pem = real.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    await _insert_row(h, "swappedjwk", "ES256", pem, keys.public_jwk("ES256", "swappedjwk", other.public_key()))
    await h.app.service.keys.load()
    published = {k["kid"]: k for k in (await h.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert published.get("swappedjwk") in (None, keys.public_jwk("ES256", "swappedjwk", real.public_key()))
