"""OAuth client authentication: ``client_secret_basic`` and ``client_secret_post`` (RFC 6749 §2.3.1).

A secret that verified recently is remembered by its SHA-256 for a minute, so a busy client does not
pay an argon2 verification per token request; the remembered digest is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address
from urllib.parse import unquote_plus

from cachetools import TTLCache
from starlette.requests import Request

from meshauth.auth.accounts import MAX_SECRET_CHARS, Client
from meshauth.auth.forms import oauth_error
from meshauth.auth.passwords import Passwords, VerifyBusy
from meshauth.auth.revocation import Stamp
from meshauth.auth.service import AuthService
from meshauth.auth.throttle import Throttled
from meshauth.http import ApiError

VERIFIED_SECRET_TTL = 60.0
MAX_CREDENTIAL_CHARS = 1024
MAX_NAME_CHARS = 128


def client_address(request: Request, trusted: Sequence[IPv4Network | IPv6Network]) -> str:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy (a sidecar, an ingress
    gateway), the nearest untrusted hop in X-Forwarded-For. Behind a mesh every peer is the proxy, so
    without this one guesser would throttle everybody."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    # Every line, in order: a proxy that adds its own line (HAProxy) leaves the client's line first.
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:64]
    return peer


def _is_trusted(address: str, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


async def verify_secret(passwords: Passwords, stored_hash: str | None, secret: str) -> bool:
    """``passwords.verify``, with VerifyBusy answered as OAuth answers overload (RFC 6749 §4.1.2.1's
    ``temporarily_unavailable``, 503 and ``retry-after``, as for a backing store down): never queued."""
    try:
        return await passwords.verify(stored_hash, secret)
    except VerifyBusy:
        raise oauth_error(
            503,
            "temporarily_unavailable",
            "too many costly password verifications in progress; retry shortly",
            **{"retry-after": "1"},
        ) from None


def too_many(retry_after: int) -> ApiError:
    return oauth_error(
        429,
        "too_many_requests",
        f"too many failed attempts; retry after {retry_after} seconds",
        **{"retry-after": str(retry_after)},
    )


class ClientAuthenticator:
    def __init__(self, service: AuthService) -> None:
        self._service = service
        # client id -> (its secret hash in SQL, SHA-256 of the secret that verified against it): a client
        # deleted and created again with another secret has another hash, so the old secret is not
        # remembered on replicas that never saw the delete.
        self._verified: TTLCache[str, tuple[str, bytes]] = TTLCache(maxsize=10_000, ttl=VERIFIED_SECRET_TTL)

    async def authenticate(self, request: Request, form: dict[str, str]) -> Client:
        client, _ = await self.authenticate_stamped(request, form)
        return client

    async def authenticate_stamped(self, request: Request, form: dict[str, str]) -> tuple[Client, Stamp]:
        """Authenticate, and return the client's cut-off stamp, read before the client row: whatever is
        issued to the client must be confirmed with it (``Denylist.unchanged``) before it is handed out."""
        client_id, secret, via_basic = self._credentials(request, form)
        fail = self._failure(via_basic)
        if not 0 < len(client_id) <= MAX_NAME_CHARS or len(secret) > MAX_SECRET_CHARS:
            raise fail
        stamp = await self._service.denylist.stamp("client", client_id)
        client = await self._service.accounts.get_client(client_id)
        digest = hashlib.sha256(secret.encode()).digest()
        remembered = self._verified.get(client_id)
        if (
            client is not None
            and remembered is not None
            and remembered[0] == client.secret_hash
            and hmac.compare_digest(remembered[1], digest)
        ):
            # The secret verified within the last minute: no guess here, nothing to throttle or hash.
            ok = True
        else:
            address = client_address(request, self._service.trusted_proxies)
            attempt = await self._service.throttle.admit("client", client_id, address)
            if isinstance(attempt, Throttled):
                raise too_many(attempt.retry_after)
            async with attempt:
                ok = await verify_secret(self._service.passwords, client.secret_hash if client else None, secret)
                attempt.correct = ok
        if not ok or client is None:
            raise fail
        if client.disabled:
            raise oauth_error(401, "invalid_client", "client is disabled")
        self._verified[client_id] = (client.secret_hash, digest)
        return client, stamp

    def forget(self, client_id: str) -> None:
        self._verified.pop(client_id, None)

    @staticmethod
    def _failure(via_basic: bool) -> ApiError:
        headers = {"www-authenticate": 'Basic realm="meshauth"'} if via_basic else {}
        return oauth_error(401, "invalid_client", "client authentication failed", **headers)

    @staticmethod
    def _credentials(request: Request, form: dict[str, str]) -> tuple[str, str, bool]:
        lines = request.headers.getlist("authorization")
        if len(lines) > 1:
            # Ambiguous credentials are refused, as the gate refuses them: with the first line deciding,
            # a proxy or log in front that reads another line would see another client.
            raise oauth_error(400, "invalid_request", "more than one Authorization header")
        header = lines[0] if lines else None
        in_body = "client_secret" in form
        if header is not None and header[:6].lower() == "basic ":
            if in_body:
                raise oauth_error(400, "invalid_request", "use one client authentication method, not two")
            if len(header) > MAX_CREDENTIAL_CHARS:
                raise oauth_error(400, "invalid_request", "Authorization header is too long")
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except ValueError:
                # binascii.Error and UnicodeDecodeError are ValueErrors, and so is what b64decode raises
                # for a str holding non-ASCII characters (a header read as latin-1 can hold any byte).
                raise oauth_error(
                    401,
                    "invalid_client",
                    "Basic credentials are not base64",
                    **{"www-authenticate": 'Basic realm="meshauth"'},
                ) from None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                raise oauth_error(
                    401,
                    "invalid_client",
                    "Basic credentials lack ':'",
                    **{"www-authenticate": 'Basic realm="meshauth"'},
                )
            # RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if "\x00" in client_id or "\x00" in secret:
                # No client id or secret holds a NUL, and PostgreSQL text cannot: refused here, as a failed
                # authentication, rather than by the driver as a false "database down" 503.
                raise oauth_error(
                    401,
                    "invalid_client",
                    "Basic credentials contain a NUL character",
                    **{"www-authenticate": 'Basic realm="meshauth"'},
                )
            if "client_id" in form and form["client_id"] != client_id:
                raise oauth_error(400, "invalid_request", "client_id in the body differs from the Basic credentials")
            return client_id, secret, True
        if in_body:
            client_id = form.get("client_id", "")
            if not client_id:
                raise oauth_error(400, "invalid_request", "client_secret without client_id")
            return client_id, form["client_secret"], False
        raise oauth_error(
            401, "invalid_client", "client authentication is required", **{"www-authenticate": 'Basic realm="meshauth"'}
        )
