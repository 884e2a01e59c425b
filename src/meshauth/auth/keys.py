"""Signing keys: kept in SQL, one signs at a time, retired keys stay published until their tokens expire.

States of a key row: *active* (``retired_at`` null, newest active signs), *retired* (still verifies and is
published while ``retired_at + access_token_ttl + leeway`` is in the future), *expired* (deleted on the next
rotation). Every replica reloads the set on a timer, on a ``keys`` invalidation, and on an unknown ``kid``
(rate-limited), so a rotation made anywhere reaches every replica.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.config import SigningAlg
from meshauth.db.tables import signing_keys

# A kid we mint is 22 url-safe characters; anything else is refused before it is used as a lookup key.
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# An unknown kid makes a replica re-read the table at most this often, so forged kids cannot flood SQL.
UNKNOWN_KID_RELOAD_INTERVAL = 1.0

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey
    public_key: PublicKey
    public_jwk: dict[str, Any]
    created_at: int
    retired_at: int | None


def generate_private_key(alg: SigningAlg) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def public_jwk(alg: str, kid: str, public_key: PublicKey) -> dict[str, Any]:
    jwk: dict[str, Any]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def _fits(alg: str, private: object) -> bool:
    if alg == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    if alg == "EdDSA":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if alg == "RS256":
        return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    return False


def _load_row(row: Any, kek: bytes | None) -> SigningKey:
    """Parse one key row; ValueError (with the kid, never key material) when the row cannot be trusted."""
    pem = row.private_pem.encode()
    encrypted = b"ENCRYPTED" in pem.split(b"\n", 1)[0]
    if encrypted and kek is None:
        raise ValueError(f"signing key {row.kid} is encrypted; set MESHAUTH_KEY_ENCRYPTION_KEY")
    try:
        private = serialization.load_pem_private_key(pem, password=kek if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        hint = " (wrong MESHAUTH_KEY_ENCRYPTION_KEY?)" if encrypted else ""
        raise ValueError(f"signing key {row.kid} is not a private key this service can read{hint}") from exc
    # The row's alg and the key must agree, or the signer would fail on every token it issues.
    if not _fits(row.alg, private):
        raise ValueError(f"signing key {row.kid}: its key is not a {row.alg!r} key")
    assert isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey)
    public = private.public_key()
    return SigningKey(
        kid=row.kid,
        alg=row.alg,
        private_key=private,
        public_key=public,
        # Derived, not read from the row: a public_jwk column that disagrees with the private key would
        # publish a key this service never signs with (or one whoever wrote it holds the private half of).
        public_jwk=public_jwk(row.alg, row.kid, public),
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def _encryption(kek: bytes | None) -> serialization.KeySerializationEncryption:
    # Keys at rest are encrypted when a key-encryption key is configured (a Kubernetes Secret, say),
    # so a database dump alone cannot mint tokens.
    return serialization.BestAvailableEncryption(kek) if kek else serialization.NoEncryption()


async def create_key(engine: AsyncEngine, alg: SigningAlg, *, retire_others: bool, kek: bytes | None = None) -> str:
    """Insert a new signing key; with ``retire_others`` every current key stops signing (rotation)."""
    private = generate_private_key(alg)
    kid = secrets.token_urlsafe(16)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(kek)
    ).decode()
    now = int(time.time())
    async with engine.begin() as conn:
        if retire_others:
            await conn.execute(signing_keys.update().where(signing_keys.c.retired_at.is_(None)).values(retired_at=now))
        await conn.execute(
            signing_keys.insert().values(
                kid=kid,
                alg=alg,
                private_pem=pem,
                public_jwk=public_jwk(alg, kid, private.public_key()),
                created_at=now,
                retired_at=None,
            )
        )
    return kid


async def rotate(
    engine: AsyncEngine, alg: SigningAlg, *, overlap: int, kek: bytes | None = None
) -> tuple[str, list[str]]:
    """Make a new key the signer, retire the rest, delete keys no live token can use. Returns (new kid, deleted)."""
    kid = await create_key(engine, alg, retire_others=True, kek=kek)
    cutoff = int(time.time()) - overlap
    async with engine.begin() as conn:
        doomed = (
            (
                await conn.execute(
                    sa.select(signing_keys.c.kid).where(
                        signing_keys.c.retired_at.is_not(None), signing_keys.c.retired_at < cutoff
                    )
                )
            )
            .scalars()
            .all()
        )
        if doomed:
            await conn.execute(signing_keys.delete().where(signing_keys.c.kid.in_(doomed)))
    return kid, list(doomed)


async def ensure_key(engine: AsyncEngine, alg: SigningAlg, *, kek: bytes | None = None) -> None:
    """Create the first signing key if the table has no active one."""
    async with engine.connect() as conn:
        active = await conn.scalar(
            sa.select(sa.func.count()).select_from(signing_keys).where(signing_keys.c.retired_at.is_(None))
        )
    if not active:
        await create_key(engine, alg, retire_others=False, kek=kek)


class KeyStore:
    """This replica's view of the signing keys: the signer, and the keys tokens may be verified with."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        overlap: int,
        kek: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._kek = kek
        self._overlap = overlap
        self._by_kid: dict[str, SigningKey] = {}
        self._signer: SigningKey | None = None
        self._refused: list[str] = []  # why rows were refused on the last load (for the start-up error)
        # Seconds, for the unknown-kid reload rate limit only; public so that a test can step past it.
        self.clock = clock
        self._last_load = -math.inf  # never loaded: the first unknown kid may reload at once
        self._lock = asyncio.Lock()
        self.table_reads = 0  # reads of the key table (startup, announcements, unknown kids)

    @property
    def signer(self) -> SigningKey:
        if self._signer is None:
            why = "".join(f"; refused: {reason}" for reason in self._refused)
            raise RuntimeError(f"no active signing key; run `meshauth admin rotate-keys`{why}")
        return self._signer

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def published(self) -> list[SigningKey]:
        return list(self._by_kid.values())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self._by_kid.values()]}

    async def load(self) -> None:
        """Re-read the table: publish active keys and retired keys that can still have live tokens."""
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        self._last_load = self.clock()
        self.table_reads += 1
        now = int(time.time())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(signing_keys))).all()
        live: list[SigningKey] = []
        refused: list[str] = []
        for row in rows:
            if row.retired_at is None or row.retired_at + self._overlap > now:
                try:
                    live.append(self._parsed(row))
                except ValueError as exc:
                    # One bad row (tampered, truncated, wrong KEK) is refused, not fatal: the other keys
                    # keep verifying and a later rotation still loads. With no good active key left, the
                    # signer is None and start-up fails clearly (AuthService.start).
                    log.error("refusing signing key row: %s", exc)
                    refused.append(str(exc))
        active = sorted((k for k in live if k.retired_at is None), key=lambda k: (k.created_at, k.kid))
        self._by_kid = {k.kid: k for k in live}
        self._refused = refused
        self._signer = active[-1] if active else None

    def _parsed(self, row: Any) -> SigningKey:
        # Parse each PEM once per process; a reload only parses keys it has not seen.
        known = self._by_kid.get(row.kid)
        if known is not None and known.retired_at == row.retired_at:
            return known
        return _load_row(row, self._kek)

    async def reload_for_unknown_kid(self) -> bool:
        """Reload if the last load is older than the rate limit; True when a reload happened.

        Single-flight: concurrent callers wait for one reload instead of each running their own, and a
        database that is down counts as "no reload" (the kid stays unknown: 401, never 500).
        """
        if self.clock() - self._last_load < UNKNOWN_KID_RELOAD_INTERVAL:
            return False
        async with self._lock:
            if self.clock() - self._last_load < UNKNOWN_KID_RELOAD_INTERVAL:
                return True  # another caller reloaded while this one waited
            try:
                await self._load()
            except (SQLAlchemyError, OSError):
                return False
        return True
