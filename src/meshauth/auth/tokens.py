"""Access tokens: JWTs per RFC 9068, minted with the active key, verified with the published ones.

Verification refuses, before any signature work: tokens over the size limit, headers that are not a JSON
object, ``typ`` other than ``at+jwt``, ``alg`` other than the key's own (so ``none`` and HS256-with-the-
public-key never reach a verifier), embedded key material or key URLs (``jwk``, ``jku``, ``x5u``, ``x5c``),
any ``crit`` (we implement no extension), and a ``kid`` that is malformed or not published.

Verified claims are cached by SHA-256 of the whole token until ``exp`` (bounded LRU); ``exp`` is re-checked
on every hit and revocation is checked separately on every request, so the cache never outlives a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from meshauth.auth.keys import KID_PATTERN, KeyStore
from meshauth.cache import ExpiringMap

FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "crit"})
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
# Our headers are ~100 characters; a header this long is an attack on the JSON parser, not a token.
MAX_HEADER_CHARS = 1024
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]


class TokenError(Exception):
    """The token is not acceptable; the message is safe to show the caller (RFC 6750 error_description)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified credential speaks for."""

    subject: str
    client_id: str
    scope: str
    jti: str
    exp: int
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    exp: int


class TokenIssuer:
    def __init__(self, keys: KeyStore, *, issuer: str, audience: str, ttl: int) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl

    def issue(self, *, subject: str, client_id: str, scope: str, extra: dict[str, Any] | None = None) -> IssuedToken:
        key = self._keys.signer
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            **(extra or {}),
            "iss": self._issuer,
            "sub": subject,
            "aud": self._audience,
            "exp": now + self.ttl,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "client_id": client_id,
            "scope": scope,
        }
        token = jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"})
        return IssuedToken(token=token, jti=jti, exp=now + self.ttl)


def _b64url_json(segment: str) -> Any:
    if len(segment) > MAX_HEADER_CHARS:
        raise TokenError("token header is too long")
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError, RecursionError) as exc:
        raise TokenError("token header is not base64url-encoded JSON") from exc


class TokenVerifier:
    def __init__(
        self,
        keys: KeyStore,
        *,
        issuer: str,
        audience: str,
        leeway: int,
        max_bytes: int,
        cache_size: int,
        cache_enabled: bool = True,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._max_bytes = max_bytes
        # Keyed by the SHA-256 digest of the whole token; an entry dies at the token's exp (wall clock),
        # so a hit is always a token that is still within its lifetime.
        self._cache: ExpiringMap[bytes, Identity] | None = ExpiringMap(maxsize=cache_size) if cache_enabled else None
        self.cache_hits = 0
        self.cache_misses = 0

    def cached(self, token: str) -> Identity | None:
        """The warm path: a previously verified, unexpired token, or None. No I/O, no signature work."""
        if self._cache is None or len(token) > self._max_bytes:
            return None
        identity = self._cache.get(hashlib.sha256(token.encode()).digest())
        if identity is not None:
            self.cache_hits += 1
        return identity

    async def verify(self, token: str) -> Identity:
        """Verify fully (cache first). Raises TokenError with a caller-safe reason."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        self.cache_misses += 1
        if len(token) > self._max_bytes:
            raise TokenError(f"token is over {self._max_bytes} bytes")
        kid, alg = self._check_header(token)
        key = self._keys.get(kid)
        if key is None and await self._keys.reload_for_unknown_kid():
            key = self._keys.get(kid)
        if key is None:
            raise TokenError("token is signed with an unknown key")
        if alg != key.alg:
            raise TokenError(f"token alg {alg!r} does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not yet valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid") from None
        except (jwt.InvalidTokenError, RecursionError):
            raise TokenError("token is malformed") from None
        identity = self._identity(claims)
        if self._cache is not None:
            self._cache.set(hashlib.sha256(token.encode()).digest(), identity, identity.exp)
        return identity

    def evict(self, token: str) -> None:
        if self._cache is not None:
            self._cache.pop(hashlib.sha256(token.encode()).digest())

    @staticmethod
    def _check_header(token: str) -> tuple[str, str]:
        if token.count(".") != 2:
            raise TokenError("token is not a JWS compact serialization")
        header = _b64url_json(token.split(".", 1)[0])
        if not isinstance(header, dict):
            raise TokenError("token header is not a JSON object")
        forbidden = FORBIDDEN_HEADERS & header.keys()
        if forbidden:
            raise TokenError(f"token header carries {sorted(forbidden)[0]!r}, which is refused")
        if header.get("typ") not in ACCEPTED_TYP:
            raise TokenError("token typ is not at+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenError("token alg is missing or none")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise TokenError("token kid is missing or malformed")
        return kid, alg

    @staticmethod
    def _identity(claims: dict[str, Any]) -> Identity:
        def text(name: str) -> str:
            value = claims.get(name, "")
            if not isinstance(value, str):
                raise TokenError(f"token claim {name!r} must be a string")
            return value

        exp = claims["exp"]
        if not isinstance(exp, int):
            raise TokenError("token claim 'exp' must be an integer")
        return Identity(
            subject=text("sub"),
            client_id=text("client_id"),
            scope=text("scope"),
            jti=text("jti"),
            exp=exp,
            claims=claims,
        )
