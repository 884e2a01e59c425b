"""``/v1/sessions``: browser sessions as an HttpOnly cookie, plus an access token for API calls."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from meshauth.auth.gate import SESSION_CLIENT_ID, join_cookies, session_cookies
from meshauth.auth.oauth import OAuthEndpoints
from meshauth.auth.service import AuthService
from meshauth.http import ApiError, json_response, read_json_object

SESSION_SCOPE = "session"


class SessionEndpoints:
    def __init__(self, service: AuthService, oauth: OAuthEndpoints) -> None:
        self._s = service
        self._oauth = oauth

    async def create(self, request: Request) -> Response:
        body = await read_json_object(request, self._s.settings.max_body_bytes)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "invalid_request", "username and password must be strings")
        stamp = await self._oauth.check_password(request, username, password)
        issued = self._s.issuer.issue(subject=username, client_id=SESSION_CLIENT_ID, scope=SESSION_SCOPE)
        new = await self._s.sessions.create(
            subject=username, scope=SESSION_SCOPE, access_jti=issued.jti, access_exp=issued.exp
        )
        if not await self._s.denylist.unchanged(stamp):
            # The user was disabled or deleted while this login ran (see ``revocation``): the session
            # may have escaped the offboarding's sweep, so end it here; nothing was handed out yet.
            await self._s.sessions.end(new.session_id)
            raise ApiError(400, "invalid_grant", "invalid username or password")
        response = json_response(
            {
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": self._s.issuer.ttl,
                "scope": SESSION_SCOPE,
                "session_expires_at": new.session.absolute_exp,
            },
            status=201,
            headers={"cache-control": "no-store"},
        )
        settings = self._s.settings
        response.set_cookie(
            settings.session_cookie_name,
            new.session_id,
            max_age=settings.session_absolute_timeout,
            path="/",
            secure=settings.cookie_secure,
            httponly=True,
            samesite=settings.cookie_samesite,
        )
        return response

    async def end(self, request: Request) -> Response:
        cookie = join_cookies(request.headers.getlist("cookie"))
        found = session_cookies(cookie, self._s.settings.session_cookie_name) if cookie else []
        if len(found) > 1:
            # The gate's rule for ambiguous credentials: which session would this end?
            raise ApiError(400, "invalid_request", "more than one session cookie on this request")
        session_id = found[0] if found else None
        session = await self._s.sessions.stored(session_id) if session_id else None
        if session is None or session_id is None:
            raise ApiError(401, "invalid_session", "no live session cookie on this request")
        # The token handed out with the session ends with it. Revoked before the session ends: two
        # writes, and if Redis fails between them the 503 must leave a logout that can be retried (the
        # other order left a live token and no session to find it by).
        await self._s.denylist.revoke(session.access_jti, session.access_exp)
        if await self._s.sessions.end(session_id) is None:
            # Ended meanwhile (a concurrent logout, an offboarding, the idle timeout): as without a cookie.
            raise ApiError(401, "invalid_session", "no live session cookie on this request")
        response = Response(status_code=204)
        settings = self._s.settings
        response.delete_cookie(
            settings.session_cookie_name,
            path="/",
            secure=settings.cookie_secure,
            httponly=True,
            samesite=settings.cookie_samesite,
        )
        return response
