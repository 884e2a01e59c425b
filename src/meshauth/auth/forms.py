"""Strict parsing of ``application/x-www-form-urlencoded`` bodies for the OAuth endpoints."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from meshauth.http import ApiError, media_type, read_body

MAX_FORM_FIELDS = 32


def oauth_error(status: int, error: str, description: str, **headers: str) -> ApiError:
    # RFC 6749 §5.1: responses carrying tokens or errors must not be cached.
    return ApiError(status, error, description, headers={"pragma": "no-cache", **headers})


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The form as a dict; 400 invalid_request for a wrong media type, bad encoding or repeated parameter."""
    media = media_type(request.headers.get("content-type"))
    if media != "application/x-www-form-urlencoded":
        raise oauth_error(400, "invalid_request", "send the body as application/x-www-form-urlencoded")
    raw = await read_body(request, limit)
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise oauth_error(400, "invalid_request", f"body is not a valid form: {exc}") from None
    form: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            # RFC 6749 §3.1/§3.2: parameters must not be included more than once.
            raise oauth_error(400, "invalid_request", f"parameter {name!r} is repeated")
        seen.add(name)
        if "\x00" in value:
            raise oauth_error(400, "invalid_request", f"parameter {name!r} contains a NUL character")
        if value:
            # RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
            form[name] = value
    return form


def requested_scope(form: dict[str, str], allowed: tuple[str, ...] | list[str]) -> str:
    """RFC 6749 §3.3: the requested scope must be within what is allowed; absent means all of it."""
    raw = form.get("scope")
    if raw is None:
        return " ".join(allowed)
    requested = raw.split(" ")
    if any(not s for s in requested):
        raise oauth_error(400, "invalid_scope", "scope must be space-separated scope tokens")
    unknown = [s for s in requested if s not in allowed]
    if unknown:
        raise oauth_error(400, "invalid_scope", f"scope {unknown[0]!r} is not allowed for this grant")
    return " ".join(dict.fromkeys(requested))
