"""The gate: one request's credentials in, an identity or a refusal out (authn mode).

Order of checks, cheapest first: bearer token from the JWT cache (no I/O), full verification on a miss,
the revocation mirror on every request; otherwise the session cookie (in-process cache, then Redis).

Ambiguous credentials are refused, never resolved by picking one: two ``Authorization`` lines, or two
session cookies (in one ``Cookie`` line or several), answer 401 ``invalid_request``. Whichever one the
gate picked, the upstream service (or a later proxy) might read the other, and a second cookie of our
name is what cookie tossing from a sibling domain looks like. A bearer token *and* a session cookie are
not ambiguous: the bearer token alone decides (a refused token is not rescued by a cookie), because a
browser app holding a session legitimately sends its access token to APIs on the same site.

Identity headers carry only safe header values: ``sub`` and ``client_id`` must be non-empty visible
ASCII (``scope`` may be empty and may contain single inner spaces), with no leading or trailing space.
Anything else — CR/LF, NUL, controls, non-ASCII — is refused with 401 ``invalid_token`` (fail closed)
rather than percent-encoded: no subject we create can hold such characters (``accounts.NAME_PATTERN``,
``SCOPE_PATTERN``), so such a token was minted elsewhere, and an encoded value would be a second
spelling of an identity that upstream services and policies would have to know to decode.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import cookies as http_cookies

from redis.exceptions import RedisError

from meshauth.auth.service import AuthService
from meshauth.auth.tokens import Identity, TokenError

SESSION_CLIENT_ID = "meshauth-session"  # reserved in accounts.RESERVED_CLIENT_IDS
REALM = 'Bearer realm="meshauth"'
IDENTITY_HEADERS = ("x-meshauth-subject", "x-meshauth-client-id", "x-meshauth-scope")
_RAW_IDENTITY = frozenset(name.encode() for name in IDENTITY_HEADERS)
# What an allow asks Envoy to take off the upstream request (HTTP ext_authz; gRPC: ``headers_to_remove``).
HEADERS_TO_REMOVE = b"x-envoy-auth-headers-to-remove"


def impostor(name: bytes) -> bool:
    """Whether a (lower-cased) request header name spells an identity header with ``_`` for ``-``
    (``x_meshauth_subject``, ``x-meshauth_scope``). Envoy overwrites the identity headers themselves
    on an allow, not these, and passes names with underscores by default; CGI-style upstreams (WSGI's
    environ, PHP, Rack) read both as ``HTTP_X_MESHAUTH_SUBJECT`` — a caller's own identity claim next
    to the gate's. An allow therefore has Envoy remove every such header (``IDENTITY_HEADERS``)."""
    return b"_" in name and name.replace(b"_", b"-") in _RAW_IDENTITY


def identity_spellings() -> list[str]:
    """Every ``_``/``-`` spelling of the identity headers but their own: what the HTTP provider must
    forward to the check (deploy/istio/mesh-config.yaml) for the gate to see and remove them."""
    out: list[str] = []
    for name in IDENTITY_HEADERS:
        parts = name.split("-")
        for mask in range(1, 2 ** (len(parts) - 1)):
            out.append(parts[0] + "".join(("_" if mask >> i & 1 else "-") + p for i, p in enumerate(parts[1:])))
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    status: int
    headers: tuple[tuple[str, str], ...]
    credential: str  # "bearer" | "session" | "none"
    reason: str = ""
    # The headers as the HTTP transport sends them, encoded once (allow verdicts are reused).
    raw: tuple[tuple[bytes, bytes], ...] = ()
    # (subject, client id) of an authenticated request refused after authentication (authz mode): sent
    # to no one, only audited — without it the audit trail said who was allowed, never who was denied.
    identity: tuple[str, str] | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def encoded(self) -> list[tuple[bytes, bytes]]:
        return list(self.raw) if self.raw else [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


def _refused(credential: str, reason: str, error: str = "invalid_token") -> Verdict:
    # Reasons can quote attacker-chosen header values: keep the challenge printable ASCII, quote-safe.
    quoted = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in reason)
    return Verdict(
        401, (("www-authenticate", f'{REALM}, error="{error}", error_description="{quoted}"'),), credential, reason
    )


MISSING = Verdict(401, (("www-authenticate", REALM),), "none", "no credential")
# Two Authorization headers: which one would the upstream service read? Refuse rather than guess.
AMBIGUOUS = _refused("bearer", "more than one Authorization header", "invalid_request")
# Refused before any parsing: a credential longer than the largest token accepted is never valid.
OVERSIZED = Verdict(401, (("www-authenticate", f'{REALM}, error="invalid_token"'),), "bearer")
# Two session cookies: the same reasoning as two Authorization lines.
AMBIGUOUS_COOKIE = _refused("session", "more than one session cookie", "invalid_request")
# Fail closed: a session that cannot be confirmed (Redis down, or slower than ``session_check_budget``)
# is not a session. The reason header is authz.REASON_HEADER's (not imported: authz imports this module).
SESSION_UNAVAILABLE = Verdict(
    503, (("x-meshauth-reason", "session_unavailable"),), "session", "session store unavailable"
)

# Visible ASCII, inner spaces allowed, no space at either end (HTTP strips it, changing the value).
_SAFE_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def _safe(value: str, *, may_be_empty: bool = False) -> bool:
    return (may_be_empty and not value) or _SAFE_VALUE.fullmatch(value) is not None


@functools.lru_cache(maxsize=65_536)
def allow(subject: str, client_id: str, scope: str, credential: str) -> Verdict:
    """The allow verdict for an identity; cached, since the same identities pass again and again.

    Every transport sends the headers of this verdict, so this is where an identity that is not a safe
    header value is turned into a refusal (see the module docstring)."""
    if not (_safe(subject) and _safe(client_id) and _safe(scope, may_be_empty=True)):
        return _refused(credential, "token identity is not a safe header value")
    headers = tuple(zip(IDENTITY_HEADERS, (subject, client_id, scope), strict=True))
    raw = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    return Verdict(200, headers, credential, raw=raw)


def join_cookies(lines: Sequence[str]) -> str | None:
    """Several ``Cookie`` lines are one cookie string (RFC 9113 §8.2.3: HTTP/2 clients split it)."""
    return "; ".join(lines) if lines else None


def session_cookies(cookie: str, name: str) -> list[str]:
    """Every value of cookie ``name`` in a cookie string, in order.

    Split as Starlette's lenient ``cookie_parser`` splits, as browsers send them: one odd cookie of
    another app on the same domain must not hide ours (``http.cookies`` stops at the first cookie it
    dislikes). Unlike that parser, which keeps the last, this keeps them all, so that the caller can
    refuse two."""
    values = []
    for chunk in cookie.split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            values.append(cookie_value(value.strip()))
    return values


def cookie_value(value: str) -> str:
    # A quoted cookie value is unquoted as Starlette unquotes it, so the gate and the logout endpoint
    # (which reads request.cookies) see the same session id.
    return http_cookies._unquote(value)


class Gate:
    def __init__(self, service: AuthService) -> None:
        self._s = service
        self.audit = service.audit
        self._cookie_name = service.settings.session_cookie_name
        self._max_authorization = service.settings.max_token_bytes + len("Bearer ")
        self._session_budget = service.settings.session_check_budget

    def screen(self, authorizations: Sequence[str]) -> Verdict | None:
        """What every transport decides from a request's ``Authorization`` lines without I/O: two
        lines (refused: the upstream might read the other one), one too large, or a token already
        verified once. None: ask :meth:`check`."""
        if len(authorizations) > 1:
            return AMBIGUOUS
        if not authorizations:
            return None
        authorization = authorizations[0]
        if len(authorization) > self._max_authorization:
            return OVERSIZED
        return self.check_warm(authorization)

    async def check(self, authorization: str | None, cookie: str | None) -> Verdict:
        if authorization:
            return await self._bearer(authorization)
        if cookie:
            session_ids = session_cookies(cookie, self._cookie_name)
            if len(session_ids) > 1:
                return AMBIGUOUS_COOKIE
            if session_ids and session_ids[0]:
                return await self._session(session_ids[0])
        return MISSING

    def check_warm(self, authorization: str) -> Verdict | None:
        """The warm path, synchronous: a bearer token already verified once, or None to take ``check``."""
        if authorization[:7] not in ("Bearer ", "bearer "):
            return None
        identity = self._s.verifier.cached(authorization[7:].strip())
        return None if identity is None else self._decide(identity)

    async def _bearer(self, authorization: str) -> Verdict:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _refused("bearer", "Authorization must be 'Bearer <token>'", "invalid_request")
        try:
            identity = await self._s.verifier.verify(token)
        except TokenError as exc:
            return _refused("bearer", str(exc))
        return self._decide(identity)

    def _decide(self, identity: Identity) -> Verdict:
        if self._s.denylist.refuses(identity):
            return _refused("bearer", "token has been revoked")
        if not self._s.listener.synced:
            # Fail closed: until the revocation list has loaded once, a revoked token looks valid.
            return Verdict(503, (), "bearer", "revocation list not loaded yet")
        return allow(identity.subject, identity.client_id, identity.scope, "bearer")

    async def _session(self, session_id: str) -> Verdict:
        try:
            # A budget under Envoy's ext_authz timeout (0.25 s in deploy/istio/mesh-config.yaml): a frozen
            # Redis held each check for the client's 0.5 s command timeout, so Envoy answered its own
            # reasonless 403 and this 503 never reached anyone.
            async with asyncio.timeout(self._session_budget):
                session = await self._s.sessions.get(session_id)
        except (RedisError, OSError, TimeoutError):
            return SESSION_UNAVAILABLE
        if session is None:
            return _refused("session", "session is unknown or has expired")
        if self._s.denylist.refuses_session(session.subject, session.created_at):
            # Its user was disabled or deleted: the session index ends sessions it knows of; this
            # refuses any that escaped it (created in the same second, or cached in this replica).
            return _refused("session", "session has been ended")
        return allow(session.subject, SESSION_CLIENT_ID, session.scope, "session")
