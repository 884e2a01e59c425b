"""The OAuth 2.0 endpoints: token (RFC 6749), introspection (RFC 7662), revocation (RFC 7009), metadata
(RFC 8414) and JWKS."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meshauth.auth.accounts import NAME_PATTERN, Client
from meshauth.auth.client_auth import ClientAuthenticator, client_address, too_many, verify_secret
from meshauth.auth.forms import oauth_error, read_form, requested_scope
from meshauth.auth.metrics import TOKENS_ISSUED
from meshauth.auth.refresh import RefreshError, RefreshGrant, Reused
from meshauth.auth.revocation import Stamp
from meshauth.auth.service import AuthService
from meshauth.auth.throttle import Throttled
from meshauth.auth.tokens import TokenError
from meshauth.http import ApiError, json_response

log = logging.getLogger(__name__)

GRANTS = ("client_credentials", "password", "refresh_token")
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
MAX_PASSWORD_CHARS = 1024


class OAuthEndpoints:
    def __init__(self, service: AuthService, clients: ClientAuthenticator) -> None:
        self._s = service
        self._clients = clients

    # --- token -------------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = await read_form(request, self._s.settings.max_body_bytes)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise oauth_error(400, "invalid_request", "grant_type is required")
        if grant_type not in GRANTS:
            raise oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type[:64]!r} is not supported")
        client, client_stamp = await self._clients.authenticate_stamped(request, form)
        if grant_type not in client.grant_types:
            raise oauth_error(400, "unauthorized_client", f"client may not use the {grant_type} grant")
        if grant_type == "client_credentials":
            return await self._client_credentials(client, client_stamp, form)
        if grant_type == "password":
            return await self._password(request, client, client_stamp, form)
        return await self._refresh(client, client_stamp, form)

    async def _client_credentials(self, client: Client, stamp: Stamp, form: dict[str, str]) -> Response:
        scope = requested_scope(form, client.scopes)
        issued = self._s.issuer.issue(subject=client.client_id, client_id=client.client_id, scope=scope)
        # Nothing is stored for this token: if the client was not cut off by now, a later cut-off's time
        # covers its iat; if it was, the client was disabled while this request ran.
        if not await self._s.denylist.unchanged(stamp):
            raise oauth_error(401, "invalid_client", "client is disabled")
        # RFC 6749 §4.4.3: no refresh token for client credentials.
        self._s.audit.token("token.issued", client.client_id, client.client_id)
        return self._token_response("client_credentials", issued.token, scope, None)

    async def _password(self, request: Request, client: Client, client_stamp: Stamp, form: dict[str, str]) -> Response:
        username, password = form.get("username"), form.get("password")
        if username is None or password is None:
            raise oauth_error(400, "invalid_request", "username and password are required")
        if username == client.client_id:  # its tokens would read as the client's own (authz_questions.subject_for)
            self._s.audit.login(False, username, client.client_id, "username_is_client_id")
            raise oauth_error(400, "invalid_grant", "a user cannot sign in through a client of the same id")
        scope = requested_scope(form, client.scopes)
        user_stamp = await self.check_password(request, username, password)
        issued = self._s.issuer.issue(subject=username, client_id=client.client_id, scope=scope)
        refresh = None
        if "refresh_token" in client.grant_types:
            # Not otherwise: a refresh token this client may not redeem would lie dormant, and turn
            # live if the grant were added to the client later.
            refresh = await self._s.refresh_tokens.issue(
                None,
                client_id=client.client_id,
                subject=username,
                scope=scope,
                access_jti=issued.jti,
                access_exp=issued.exp,
            )
        if not await self._s.denylist.unchanged(client_stamp, user_stamp):
            if refresh is not None:
                await self._withdraw(refresh)
            raise oauth_error(400, "invalid_grant", "invalid username or password")
        self._s.audit.token("token.issued", username, client.client_id)
        return self._token_response("password", issued.token, scope, refresh)

    async def _withdraw(self, refresh_token: str) -> None:
        """End a grant whose account was cut off while it was being issued (nothing was handed out)."""
        row = await self._s.refresh_tokens.lookup(refresh_token)
        if row is not None:
            for jti, exp in await self._s.refresh_tokens.revoke_family(str(row.family_id)):
                await self._s.denylist.revoke(jti, exp)

    async def check_password(self, request: Request, username: str, password: str) -> Stamp:
        """Verify a user's password under the guessing throttle; invalid_grant on any failure.

        Returns the user's cut-off stamp, read before the user row: the caller confirms it after storing
        what it issues (see ``revocation``)."""
        if not NAME_PATTERN.fullmatch(username) or len(password) > MAX_PASSWORD_CHARS:
            raise oauth_error(400, "invalid_grant", "invalid username or password")
        address = client_address(request, self._s.trusted_proxies)
        attempt = await self._s.throttle.admit("user", username, address)
        if isinstance(attempt, Throttled):
            raise too_many(attempt.retry_after)
        async with attempt:
            stamp = await self._s.denylist.stamp("sub", username)
            user = await self._s.accounts.get_user(username)
            ok = await verify_secret(self._s.passwords, user.password_hash if user else None, password)
            # A disabled user's right password counts as a failure and gets a wrong one's words.
            attempt.correct = ok and user is not None and not user.disabled
        self._s.audit.login(attempt.correct, username, "")
        if not attempt.correct:
            raise oauth_error(400, "invalid_grant", "invalid username or password")
        return stamp

    async def _refresh(self, client: Client, client_stamp: Stamp, form: dict[str, str]) -> Response:
        token = form.get("refresh_token")
        if not token:
            raise oauth_error(400, "invalid_request", "refresh_token is required")
        try:
            outcome = await self._s.refresh_tokens.redeem(token, client.client_id)
        except RefreshError as exc:
            raise oauth_error(400, "invalid_grant", str(exc)) from None
        if isinstance(outcome, Reused):
            for jti, exp in outcome.access_tokens:
                await self._s.denylist.revoke(jti, exp)
            raise oauth_error(400, "invalid_grant", "refresh token was already used; its token family is revoked")
        grant: RefreshGrant = outcome
        issued: list[str] = []  # the successor, once stored
        try:
            scope, access, refresh = await self._successor(client, client_stamp, grant, form, issued)
        except ApiError:
            raise
        except Exception:
            # A dependency failed after the token was spent: give it back before the 503, so the
            # client's retry is a refresh, not a replay that revokes its family (``give_back``).
            try:
                await self._s.refresh_tokens.give_back(grant, issued[0] if issued else None)
            except Exception:  # the database is down too: the retry will find the token spent
                log.warning("a refresh token could not be given back after a failure", exc_info=True)
            raise
        self._s.audit.token("token.refreshed", grant.subject, client.client_id)
        return self._token_response("refresh_token", access, scope, refresh)

    async def _successor(
        self, client: Client, client_stamp: Stamp, grant: RefreshGrant, form: dict[str, str], stored: list[str]
    ) -> tuple[str, str, str]:
        """The scope, access token and refresh token that follow ``grant`` (its token spent); the
        refresh token is put in ``stored`` as soon as it is stored."""
        user_stamp = await self._s.denylist.stamp("sub", grant.subject)
        user = await self._s.accounts.get_user(grant.subject)
        if user is None or user.disabled:
            raise oauth_error(400, "invalid_grant", "the user of this refresh token is gone or disabled")
        # RFC 6749 §6: a refreshed scope may narrow, never widen, the original grant; nor may it pass
        # what the client holds now (an admin may have narrowed it since: a family is refreshed for
        # as long as its holder likes, and would mint the old scopes all that time).
        scope = requested_scope(form, [s for s in grant.scope.split(" ") if s and s in client.scopes])
        issued = self._s.issuer.issue(subject=grant.subject, client_id=client.client_id, scope=scope)
        try:
            refresh = await self._s.refresh_tokens.issue(
                grant,
                client_id=client.client_id,
                subject=grant.subject,
                scope=grant.scope,
                access_jti=issued.jti,
                access_exp=issued.exp,
            )
        except RefreshError as exc:  # replayed meanwhile: the family is revoked (nothing was handed out)
            raise oauth_error(400, "invalid_grant", str(exc)) from None
        stored.append(refresh)
        if not await self._s.denylist.unchanged(client_stamp, user_stamp):
            await self._withdraw(refresh)
            raise oauth_error(400, "invalid_grant", "the user of this refresh token is gone or disabled")
        return scope, issued.token, refresh

    def _token_response(self, grant: str, access_token: str, scope: str, refresh_token: str | None) -> Response:
        # Counted here, once the token is handed out (a grant withdrawn above issued nothing).
        TOKENS_ISSUED.add(grant)
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self._s.issuer.ttl,
            "scope": scope,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return json_response(body, headers=NO_STORE)

    # --- introspection and revocation ----------------------------------------------------------------

    async def introspect(self, request: Request) -> Response:
        form = await read_form(request, self._s.settings.max_body_bytes)
        await self._clients.authenticate(request, form)
        token = form.get("token")
        if token is None:
            raise oauth_error(400, "invalid_request", "token is required")
        # RFC 7662 §2.1: the hint orders the search; a wrong hint must not hide a live token.
        lookups = [self._introspect_access, self._introspect_refresh]
        if form.get("token_type_hint") == "refresh_token":
            lookups.reverse()
        for lookup in lookups:
            found = await lookup(token)
            if found is not None:
                return json_response(found, headers=NO_STORE)
        return json_response({"active": False}, headers=NO_STORE)

    async def _introspect_refresh(self, token: str) -> dict[str, Any] | None:
        refresh = await self._s.refresh_tokens.lookup(token)
        now = int(time.time())
        if (
            refresh is None
            or refresh.used_at is not None
            or refresh.revoked_at is not None
            or refresh.expires_at <= now
        ):
            return None
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": refresh.client_id,
            "sub": refresh.subject,
            "scope": refresh.scope,
            "exp": refresh.expires_at,
            "iat": refresh.created_at,
            "iss": self._s.settings.issuer,
        }

    async def _introspect_access(self, token: str) -> dict[str, Any] | None:
        try:
            identity = await self._s.verifier.verify(token)
        except TokenError:
            return None
        if self._s.denylist.refuses(identity) or not self._s.listener.synced:  # unsynced: no revocation known
            return None
        # RFC 7662 §2.2: active only before its expiration. The verifier's leeway (clock skew between
        # the replica that issued and the one that checks) kept it "active" with its exp in the past,
        # which the caller cannot tell from a live token without comparing clocks itself.
        if identity.exp <= time.time():
            return None
        claims = identity.claims
        return {
            "active": True,
            "token_type": "Bearer",
            "scope": identity.scope,
            "client_id": identity.client_id,
            "sub": identity.subject,
            "exp": claims["exp"],
            "iat": claims["iat"],
            "nbf": claims.get("nbf", claims["iat"]),
            "iss": claims["iss"],
            "aud": claims["aud"],
            "jti": identity.jti,
        }

    async def revoke(self, request: Request) -> Response:
        form = await read_form(request, self._s.settings.max_body_bytes)
        client = await self._clients.authenticate(request, form)
        token = form.get("token")
        if token is None:
            raise oauth_error(400, "invalid_request", "token is required")
        # RFC 7009 §2.1: the hint orders the search, and the search extends to every kind.
        lookups = [self._revoke_access, self._revoke_refresh]
        if form.get("token_type_hint") == "refresh_token":
            lookups.reverse()
        for lookup in lookups:
            if await lookup(token, client.client_id):
                break
        # RFC 7009 §2.2: an invalid or unknown token still gets 200.
        return json_response({}, headers=NO_STORE)

    async def _revoke_access(self, token: str, client_id: str) -> bool:
        try:
            identity = await self._s.verifier.verify(token)
        except TokenError:
            return False
        if identity.client_id != client_id:
            raise oauth_error(400, "unauthorized_client", "token was not issued to this client")
        await self._s.denylist.revoke(identity.jti, identity.exp)
        self._s.audit.token("token.revoked", identity.subject, client_id)
        return True

    async def _revoke_refresh(self, token: str, client_id: str) -> bool:
        refresh = await self._s.refresh_tokens.lookup(token)
        if refresh is None:
            return False
        if refresh.client_id != client_id:
            raise oauth_error(400, "unauthorized_client", "token was not issued to this client")
        # RFC 7009 §2.1: revoking a refresh token also invalidates access tokens of the same grant.
        for jti, exp in await self._s.refresh_tokens.revoke_family(str(refresh.family_id)):
            await self._s.denylist.revoke(jti, exp)
        self._s.audit.token("token.revoked", refresh.subject, client_id, reason="refresh token")
        return True

    # --- discovery ------------------------------------------------------------------------------------

    async def metadata(self, _request: Request) -> Response:
        iss = self._s.settings.issuer
        return json_response(
            {
                "issuer": iss,
                "token_endpoint": f"{iss}/oauth2/token",
                "jwks_uri": f"{iss}/.well-known/jwks.json",
                "introspection_endpoint": f"{iss}/oauth2/introspect",
                "revocation_endpoint": f"{iss}/oauth2/revoke",
                "grant_types_supported": list(GRANTS),
                "response_types_supported": [],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "access_token_signing_alg_values_supported": sorted({k.alg for k in self._s.keys.published()}),
            },
            headers={"cache-control": "public, max-age=300"},
        )

    async def jwks(self, _request: Request) -> Response:
        # Short max-age: a rotation must reach verifiers well within the overlap window.
        return json_response(self._s.keys.jwks(), headers={"cache-control": "public, max-age=60"})
