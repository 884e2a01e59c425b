"""Who may ask the decision API: bearer tokens, and/or mesh identities (SPIFFE ids) taken from the
``x-forwarded-client-cert`` header that Istio's sidecar sets. Off unless configured, so the AuthZEN
API stays open on loopback as before (``DecisionGuard.from_settings`` returns None).

Why a check here at all: a request's ``properties`` are merged over stored attributes, so a caller
who reaches the decision API can ask "would alice be allowed if she were not suspended?" and get a
yes. In production the decision API should be reachable only by the services that enforce its
answers; these are the two ways to say which ones.

Tokens: the presented credential is hashed (SHA-256) once and compared with every configured
token's digest through ``hmac.compare_digest``, without stopping at a match: the time taken says
neither which token matched nor how long any token is.

Mesh identity: Istio's inbound sidecar listener runs with ``forward_client_cert_details:
APPEND_FORWARD`` (Subject, URI, DNS set): on an mTLS connection it *appends* one element describing
the verified peer certificate to whatever XFCC the caller sent, and on a plaintext connection it
removes the header. So only the **last** element is the sidecar's word; earlier ones are the
caller's claims. That holds only when every request reaches the service through its sidecar — hence
the mode is off unless ``decision_api_allowed_principals`` is set, and the README says when not to
set it.

Every refusal is a 401 with ``www-authenticate: Bearer`` and the ``{"error", "error_description"}``
body, decided from headers alone — before any of the body is read.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from meshauth.config import MAX_DECISION_TOKEN_CHARS
from meshauth.http import ApiError
from meshauth.policy.metrics import DECISION_API_REFUSED

if TYPE_CHECKING:
    from meshauth.config import Settings

# A configured token is at most MAX_DECISION_TOKEN_CHARS (config.py checks), so a longer header is
# refused on its length, without hashing it. XFCC elements are ~300 bytes; a few hops fit in 16 KiB.
MAX_AUTHORIZATION_CHARS = len("Bearer ") + MAX_DECISION_TOKEN_CHARS
MAX_XFCC_CHARS = 16_384
XFCC = "x-forwarded-client-cert"
_REALM = 'Bearer realm="meshauth-decisions"'


def digest(credential: str) -> bytes:
    """The SHA-256 of a token: equal-length values for the constant-time comparison."""
    return hashlib.sha256(credential.encode("latin-1")).digest()


def _refused(error: str, description: str) -> ApiError:
    challenge = _REALM if error == "unauthorized" else f'{_REALM}, error="{error}"'
    return ApiError(401, error, description, headers={"www-authenticate": challenge})


NO_CREDENTIAL = _refused("unauthorized", "the decision API needs 'Authorization: Bearer <token>'")
NO_PEER = _refused("unauthorized", "the caller's mesh identity is missing or not allowed")
NO_CREDENTIAL_OR_PEER = _refused(
    "unauthorized", "the decision API needs 'Authorization: Bearer <token>' or an allowed mesh identity"
)
BAD_TOKEN = _refused("invalid_token", "the bearer token is not one the decision API accepts")
TWO_LINES = _refused("invalid_request", "more than one Authorization line")
UNREADABLE = _refused("invalid_request", "the Authorization header is not visible ASCII")
TOO_LONG = _refused("invalid_request", f"the Authorization header is over {MAX_AUTHORIZATION_CHARS} characters")
BAD_XFCC = _refused("invalid_request", "x-forwarded-client-cert is repeated, unreadable or too long")


# A run of characters other than the separator, in which a double-quoted string (``\\"`` escapes a
# quote) counts as one piece: Envoy quotes values holding ``,`` ``;`` or ``=`` (Subject always).
_PARTS = {sep: re.compile(rf'(?:[^{sep}"]|"(?:[^"\\]|\\.)*")*') for sep in ",;"}


def _split(text: str, sep: str) -> list[str] | None:
    """``text`` split on ``sep`` outside double quotes; None when a quote is left open."""
    pattern = _PARTS[sep]
    parts: list[str] = []
    pos = 0
    while True:
        m = pattern.match(text, pos)
        assert m is not None  # the pattern matches the empty string
        parts.append(m.group())
        pos = m.end()
        if pos == len(text):
            return parts
        if text[pos] != sep:
            return None  # an opening quote with no closing one
        pos += 1


@functools.lru_cache(maxsize=1024)
def _last_uris(line: str) -> tuple[str, ...]:
    """Cached: a caller's sidecar sends the same line on every request (same certificate), so the
    hot path is a dict lookup; the bound keeps a flood of distinct lines from growing memory."""
    elements = _split(line, ",")
    if not elements:
        return ()
    pairs = _split(elements[-1], ";")
    if pairs is None:
        return ()
    uris: list[str] = []
    for pair in pairs:
        key, eq, value = pair.strip().partition("=")
        if not eq or key.strip().lower() != "uri":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        uris.append(value)
    return tuple(uris)


def mesh_principals(lines: Sequence[str]) -> list[str]:
    """The ``URI`` values of the last element of an XFCC header (the one the local sidecar
    appended); an empty list when there is none or the header does not parse."""
    if len(lines) != 1:
        return []
    return list(_last_uris(lines[0]))


class DecisionGuard:
    def __init__(self, *, tokens: Sequence[str], principals: Sequence[str]) -> None:
        self._digests = tuple(digest(t) for t in tokens)
        self._principals = frozenset(principals)
        if self._digests and self._principals:
            self._missing = NO_CREDENTIAL_OR_PEER
        else:
            self._missing = NO_CREDENTIAL if self._digests else NO_PEER

    @classmethod
    def from_settings(cls, settings: Settings) -> DecisionGuard | None:
        """The guard the settings ask for, or None: protection is off (the default)."""
        tokens = [t.get_secret_value() for t in settings.decision_api_tokens]
        principals = settings.decision_api_allowed_principals
        if not tokens and not principals:
            return None
        return cls(tokens=tokens, principals=principals)

    def _token_ok(self, authorization: str) -> bool:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return False
        presented = digest(credential)
        matched = False
        for expected in self._digests:
            # ``|`` rather than ``or``: every configured token is compared, whichever matches.
            matched = hmac.compare_digest(presented, expected) | matched
        return matched

    def check(
        self,
        authorizations: Sequence[str],
        client_certs: Sequence[str],
        *,
        unreadable: bool = False,
        unreadable_xfcc: bool = False,
    ) -> ApiError | None:
        """None when the caller may ask; else the 401 to answer. ``authorizations`` and
        ``client_certs`` are every line of those headers; ``unreadable*`` say that a line was
        present but its value hidden (granian's RSGI drops values that are not visible ASCII)."""
        refused = self._refusal(authorizations, client_certs, unreadable, unreadable_xfcc)
        if refused is not None:
            DECISION_API_REFUSED.add(refused.error)
        return refused

    def _refusal(
        self, authorizations: Sequence[str], client_certs: Sequence[str], unreadable: bool, unreadable_xfcc: bool
    ) -> ApiError | None:
        if self._digests:
            if unreadable:
                return UNREADABLE
            if len(authorizations) > 1:
                # Ambiguous credentials are refused, as at the gate: never guess which one counts.
                return TWO_LINES
            if authorizations:
                authorization = authorizations[0]
                if len(authorization) > MAX_AUTHORIZATION_CHARS:
                    return TOO_LONG
                return None if self._token_ok(authorization) else BAD_TOKEN
        if self._principals:
            if unreadable_xfcc or len(client_certs) > 1 or sum(map(len, client_certs)) > MAX_XFCC_CHARS:
                # One sidecar writes one line; more (or an unreadable one) was not its doing.
                return BAD_XFCC
            if any(uri in self._principals for uri in mesh_principals(client_certs)):
                return None
        return self._missing

    def check_asgi(self, headers: Sequence[tuple[bytes, bytes]]) -> ApiError | None:
        """:meth:`check` over an ASGI scope's raw header list."""
        authorizations: list[str] = []
        certs: list[str] = []
        for name, value in headers:
            if name == b"authorization":
                authorizations.append(value.decode("latin-1"))
            elif name == b"x-forwarded-client-cert":
                certs.append(value.decode("latin-1"))
        return self.check(authorizations, certs)

    def check_rsgi(self, headers: object) -> ApiError | None:
        """:meth:`check` over granian's RSGI headers (``get_all`` leaves out values that are not
        visible ASCII, so a name present without a readable value is refused as unreadable)."""
        authorizations: list[str] = headers.get_all("authorization")  # type: ignore[attr-defined]
        certs: list[str] = headers.get_all(XFCC)  # type: ignore[attr-defined]
        return self.check(
            authorizations,
            certs,
            unreadable=not authorizations and "authorization" in headers,  # type: ignore[operator]
            unreadable_xfcc=not certs and XFCC in headers,  # type: ignore[operator]
        )
