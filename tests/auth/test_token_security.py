"""Hostile tokens at the gate: every one is a 401 with a reason, never a 500 and never an allow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshauth.auth.tokens import TokenError
from tests.auth.conftest import Harness, b64, claims, sign


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])


async def refused(h: Harness, token: str) -> str:
    r = await h.gate(token)
    assert r.status_code == 401, r.headers
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    return challenge


async def test_well_formed_token_passes(auth_sqlite: Harness) -> None:
    """The forging helpers make a token the gate accepts, so each refusal below is the attack's doing."""
    r = await auth_sqlite.gate(sign(auth_sqlite, claims(auth_sqlite)))
    assert r.status_code == 200
    assert r.headers["x-meshauth-subject"] == "mallory"


async def test_alg_none(auth_sqlite: Harness) -> None:
    """alg: none is refused."""
    h = auth_sqlite
    token = raw_token({"alg": "none", "typ": "at+jwt", "kid": h.app.service.keys.signer.kid}, claims(h))
    assert "none" in await refused(h, token)


async def test_hs256_signed_with_public_key(auth_sqlite: Harness) -> None:
    """Algorithm confusion: HS256 keyed with the published public key is refused."""
    h = auth_sqlite
    key = h.app.service.keys.signer
    pem = key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).encode())
    payload = b64(json.dumps(claims(h)).encode())
    sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert "does not match" in await refused(h, f"{header}.{payload}.{b64(sig)}")


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "x5c"])
async def test_embedded_key_headers(auth_sqlite: Harness, name: str) -> None:
    """A token naming its own key (jwk, jku, x5u, x5c) is refused even when otherwise valid."""
    h = auth_sqlite
    attacker = ec.generate_private_key(ec.SECP256R1())
    values = {
        "jwk": jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key(), as_dict=True),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIB"],
    }
    token = jwt.encode(
        claims(h), attacker, algorithm="ES256", headers={"typ": "at+jwt", "kid": "evil", name: values[name]}
    )
    assert name in await refused(h, token)
    # The same header on a token our own key signed is still refused.
    assert name in await refused(h, sign(h, claims(h), **{name: values[name]}))


async def test_unknown_kid(auth_sqlite: Harness) -> None:
    """A kid that is not published is refused."""
    h = auth_sqlite
    token = sign(h, claims(h), kid="NoSuchKeyId12345")
    assert "unknown key" in await refused(h, token)


@pytest.mark.parametrize("kid", ["../../../etc/passwd", "/dev/null", "a b", "k" * 65, "", "key\x00"])
async def test_kid_path_traversal_and_junk(auth_sqlite: Harness, kid: str) -> None:
    """A kid that is not a plain identifier is refused before any lookup."""
    h = auth_sqlite
    token = sign(h, claims(h), kid=kid)
    assert "kid" in await refused(h, token)


async def test_kid_of_wrong_type(auth_sqlite: Harness) -> None:
    """A non-string kid is refused."""
    h = auth_sqlite
    token = raw_token({"alg": "ES256", "typ": "at+jwt", "kid": ["a"]}, claims(h), b"x" * 64)
    assert "kid" in await refused(h, token)


@pytest.mark.parametrize("crit", [["exp"], ["urn:unknown"], ["b64"]])
async def test_unknown_crit(auth_sqlite: Harness, crit: list[str]) -> None:
    """Any crit header is refused: meshauth implements no JWS extension."""
    h = auth_sqlite
    header: dict[str, Any] = {"crit": crit}
    for name in crit:
        header.setdefault(name, True)
    header.pop("exp", None)
    assert "crit" in await refused(h, sign(h, claims(h), **header))


@pytest.mark.parametrize("which", ["r", "s", "both"])
async def test_ecdsa_zero_signature_components(auth_sqlite: Harness, which: str) -> None:
    """ECDSA signatures with r = 0 or s = 0 are refused (CVE-2022-21449 class)."""
    h = auth_sqlite
    good = sign(h, claims(h))
    head, body, sig = good.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    r, s = raw[:32], raw[32:]
    zero = bytes(32)
    forged = {"r": zero + s, "s": r + zero, "both": zero + zero}[which]
    assert "signature" in await refused(h, f"{head}.{body}.{b64(forged)}")


async def test_tampered_payload(auth_sqlite: Harness) -> None:
    """Changing a claim after signing breaks the signature."""
    h = auth_sqlite
    head, _, sig = sign(h, claims(h)).split(".")
    evil = b64(json.dumps(claims(h, sub="admin")).encode())
    assert "signature" in await refused(h, f"{head}.{evil}.{sig}")


async def test_expired(auth_sqlite: Harness) -> None:
    """A token past exp by more than the leeway is refused."""
    h = auth_sqlite
    leeway = h.app.settings.leeway
    token = sign(h, claims(h, exp=int(time.time()) - leeway - 5, iat=int(time.time()) - 600))
    assert "expired" in await refused(h, token)


async def test_expiry_within_leeway_is_accepted(auth_sqlite: Harness) -> None:
    """Clock skew within the configured leeway is tolerated: the leeway is bounded, not zero."""
    h = auth_sqlite
    token = sign(h, claims(h, exp=int(time.time()) - 5, iat=int(time.time()) - 600))
    assert (await h.gate(token)).status_code == 200


async def test_not_yet_valid(auth_sqlite: Harness) -> None:
    """nbf beyond the leeway is refused."""
    h = auth_sqlite
    token = sign(h, claims(h, nbf=int(time.time()) + 3600))
    assert "not yet valid" in await refused(h, token)


async def test_issued_in_the_future(auth_sqlite: Harness) -> None:
    """iat beyond the leeway is refused."""
    h = auth_sqlite
    token = sign(h, claims(h, iat=int(time.time()) + 3600))
    assert "not yet valid" in await refused(h, token)


async def test_wrong_issuer(auth_sqlite: Harness) -> None:
    """A token from another issuer is refused."""
    h = auth_sqlite
    assert "issuer" in await refused(h, sign(h, claims(h, iss="https://evil.example")))


async def test_wrong_audience(auth_sqlite: Harness) -> None:
    """A token for another audience is refused."""
    h = auth_sqlite
    assert "audience" in await refused(h, sign(h, claims(h, aud="another-api")))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub", "jti", "client_id"])
async def test_missing_required_claim(auth_sqlite: Harness, claim: str) -> None:
    """Each claim RFC 9068 requires must be present."""
    h = auth_sqlite
    assert claim in await refused(h, sign(h, claims(h, **{claim: None})))


async def test_wrong_typ(auth_sqlite: Harness) -> None:
    """An ID token or generic JWT (typ JWT) is not an access token (RFC 9068 §4)."""
    h = auth_sqlite
    assert "typ" in await refused(h, sign(h, claims(h), typ="JWT"))


async def test_oversized_token_refused_before_parsing(auth_sqlite: Harness) -> None:
    """A token over the size limit is refused without being decoded."""
    h = auth_sqlite
    limit = h.app.settings.max_token_bytes
    r = await h.gate("a.b." + "c" * (limit - 4))
    assert r.status_code == 401
    assert "over" not in r.headers["www-authenticate"]  # just under the limit: parsed, then refused
    r = await h.gate("a.b." + "c" * (limit - 3))
    assert r.status_code == 401
    # Refused at the edge from the header's length alone: no parse, so no reason from the verifier.
    assert r.headers["www-authenticate"] == 'Bearer realm="meshauth", error="invalid_token"'
    with pytest.raises(TokenError, match=f"over {limit} bytes"):
        await h.app.service.verifier.verify("a.b." + "c" * (limit - 3))
    # Bigger than the header limit at the edge: same answer, no parsing.
    r = await h.gate("a.b." + "c" * (limit * 2))
    assert r.status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "e30.e30.",
        "bnVsbA.e30.AA",
        "W10.e30.AA",
        "eyJhbGciOiJFUzI1NiJ9.%%%.AA",
    ],
)
async def test_garbage_tokens(auth_sqlite: Harness, token: str) -> None:
    """Strings that are not JWS compact tokens are refused cleanly."""
    r = await auth_sqlite.http.get("/ext_authz/x", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_non_bearer_scheme(auth_sqlite: Harness) -> None:
    """Basic or other schemes at the gate are refused with invalid_request."""
    r = await auth_sqlite.http.get("/ext_authz/x", headers={"authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


async def test_rs256_token_against_es256_key(auth_sqlite: Harness) -> None:
    """A token whose alg differs from its key's alg is refused."""
    h = auth_sqlite
    key = h.app.service.keys.signer
    token = raw_token({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, claims(h), b"\x01" * 256)
    assert "does not match" in await refused(h, token)


@pytest.mark.parametrize("alg", ["ES256\u4e2d", "ES256\r\nx-meshauth-subject: root", 'ES256"'])
async def test_hostile_alg_text_stays_out_of_headers(auth_sqlite: Harness, alg: str) -> None:
    """An alg with non-ASCII, CR/LF or quotes is refused, and the challenge header stays clean ASCII."""
    h = auth_sqlite
    token = raw_token({"alg": alg, "typ": "at+jwt", "kid": h.app.service.keys.signer.kid}, claims(h), b"x" * 64)
    challenge = await refused(h, token)
    assert challenge.isascii()
    assert "\r" not in challenge and "\n" not in challenge
    assert "x-meshauth-subject" not in (await h.gate(token)).headers


async def test_deeply_nested_token_header(auth_sqlite: Harness) -> None:
    """A header of thousands of nested arrays is a 401, not a RecursionError."""
    h = auth_sqlite
    for depth in (500, 5000):
        header = b64(b"[" * depth)
        r = await h.gate(f"{header}.{b64(b'{}')}.AA")
        assert r.status_code == 401
