"""Checks of single setting values made when settings load: database and Redis URLs, decision API
credentials. Each raises ValueError with the whole message, accepted form included.

Checked at load rather than when an engine or client is first built: a bad value is a configuration
error reported with the others (naming the variable), not a traceback from deep inside a command
or a worker that crash-loops on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshauth.redis_urls import (
    CLUSTER_SCHEMES,
    CREDENTIALS_CUT,
    SENTINEL_SCHEMES,
    credentials_cut,
    hash_tag,
    is_cluster_url,
    parse_ha_url,
)

REDIS_URL_SCHEMES = ("redis://", "rediss://", "valkey://", "unix://", *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)


def async_database_url(url: str) -> str:
    """Map the URL spellings platforms use to the async drivers meshauth ships with."""
    for prefix, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError(
        f"unsupported database URL scheme {url.split(':', 1)[0]!r}; expected postgresql://user:password@host:5432/db"
        " or sqlite:///path/to/file.db"
    )


def check_database_url(url: str) -> None:
    """Raise ValueError unless ``url`` names a supported database with an address that parses."""
    async_database_url(url)
    if not url.startswith("sqlite"):
        check_url_address(url, "postgresql://user:password@host:5432/db")


def check_redis_url(url: str) -> None:
    """Raise ValueError unless ``url`` names a Redis (or Valkey) with a supported scheme and an address that parses."""
    if not url.startswith(REDIS_URL_SCHEMES):
        # Up to the first ':' only: behind it, in a URL with its slashes mistyped, comes the password.
        scheme = url.split(":", 1)[0][:20]
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r}; expected redis://host:port/db, rediss://… (TLS),"
            " valkey://host:port, unix:///path/to/socket, redis+sentinel://host1:26379,host2:26379/<service>"
            " or redis+cluster://host1:6379,host2:6379"
        )
    if parse_ha_url(url) is None and not url.startswith("unix://"):
        check_url_address(url, "redis://host:6379/0")


def check_policy_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an http(s) base URL of a policy service whose address parses."""
    if not url.startswith(("http://", "https://")):
        # The scheme only: the problem line shows the value, masked; the URL here would carry its password.
        raise ValueError(f"policy_urls: scheme {url.split(':', 1)[0][:20]!r} is not http:// or https://")
    check_url_address(url, "http://policy:8090")


def check_routes_file(path: Path) -> None:
    """Read the route table at load, so a bad one stops every command and service before it starts, naming the line."""
    from meshauth.routes import RouteTableError, load_routes  # YAML parsing only when a table is configured

    try:
        load_routes(path)
    except RouteTableError as exc:
        raise ValueError(str(exc)) from None


def check_url_address(url: str, example: str) -> None:
    """Raise ValueError unless the URL's host parses and its port, when given, is a number from 1 to 65535.

    A port like ``notaport`` or ``99999``, or an unclosed ``[::1``, would otherwise be a ValueError
    traceback from the driver when it first connects.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number or is above 65535
        parts.hostname  # noqa: B018 - parsed for its ValueError (a bracketed host that is not an IPv6 address)
    except ValueError as exc:
        if credentials_cut(url):  # urlsplit's message quotes the "port" it read: a piece of the password
            raise ValueError(f"not a valid URL ({CREDENTIALS_CUT}); expected {example}") from None
        raise ValueError(f"not a valid URL ({exc}); expected {example}") from None
    if port == 0:
        raise ValueError(f"port 0 is not a port to connect to; expected a port from 1 to 65535, e.g. {example}")


def check_decision_token(text: str, max_chars: int) -> None:
    """A decision API token is sent as ``Authorization: Bearer <token>``: visible ASCII, no spaces; long enough
    not to guess."""
    if not 16 <= len(text) <= max_chars or not all("!" <= c <= "~" for c in text):
        raise ValueError(
            f"decision_api_tokens: each token must be 16 to {max_chars} visible ASCII "
            "characters without spaces (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def check_spiffe_id(principal: str) -> None:
    if not principal.startswith("spiffe://") or any(c in principal for c in ',;"= ') or not principal.isascii():
        raise ValueError(
            f"decision_api_allowed_principals: {principal!r} is not a SPIFFE id "
            "(spiffe://<trust domain>/ns/<namespace>/sa/<service account>)"
        )


# Field validators (``Annotated[..., AfterValidator(...)]`` in config.Settings): each returns the value.


def database_url_checked(url: str | None) -> str | None:
    # Checked at load rather than when the engine is first built (this module's docstring says why).
    if url is not None:
        check_database_url(url)
    return url


def redis_url_checked(url: str | None) -> str | None:
    if url is not None:
        check_redis_url(url)
    return url


def redis_prefix_checked(prefix: str) -> str:
    if not prefix.endswith(":"):
        raise ValueError("redis_prefix must end with ':'")
    return prefix


CLUSTER_PREFIX = "{meshauth}:"  # the prefix a Cluster URL gets when none is set


def with_cluster_prefix(data: Any, url_keys: Sequence[str]) -> Any:
    """The settings' input with ``redis_prefix`` defaulted to ``CLUSTER_PREFIX`` when the Redis URL (the
    first of ``url_keys`` given) is a Cluster URL and no prefix was set anywhere. A prefix that was set is
    left alone, for ``check_cluster_prefix`` to refuse if untagged."""
    if not isinstance(data, dict) or "redis_prefix" in data:
        return data
    url = next((data[key] for key in url_keys if key in data), None)
    if isinstance(url, str) and is_cluster_url(url):
        return {**data, "redis_prefix": CLUSTER_PREFIX}
    return data


def check_cluster_prefix(prefix: str, redis_url: str | None) -> None:
    """With a Cluster URL every meshauth key must hash to one slot: MULTI, Lua, MGET and XREAD over
    several streams touch several keys at once, and Cluster refuses that across slots (CROSSSLOT)."""
    if is_cluster_url(redis_url) and hash_tag(prefix) is None:
        raise ValueError(
            "with a redis+cluster:// URL the prefix must carry a hash tag, e.g. {meshauth}: (every meshauth key"
            " in one slot: multi-key commands cannot span slots); unset, it is {meshauth}:"
        )


def listen_host_checked(host: str) -> str:
    """An address to bind: empty would bind every interface without anyone having asked for it."""
    if not host.strip():
        raise ValueError(
            "must name an address to listen on: 127.0.0.1 for this host only, 0.0.0.0 for every interface"
            " (empty would bind every interface silently)"
        )
    return host


def issuer_checked(issuer: str) -> str:
    return _base_url(issuer, "issuer must be an http(s) URL without query, fragment or spaces (RFC 8414 §2)")


def public_url_checked(url: str) -> str:
    return _base_url(url, "must be an http(s) URL without query, fragment or spaces")


def _base_url(url: str, refusal: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with no query or fragment."""
    # No spaces or control characters: the URL goes verbatim into every token, the metadata and headers.
    if (
        not url.startswith(("https://", "http://"))
        or "?" in url
        or "#" in url
        or any(c <= " " or c == "\x7f" for c in url)
    ):
        raise ValueError(refusal)
    return url.rstrip("/")


def routes_file_checked(path: Path | None) -> Path | None:
    if path is not None:
        check_routes_file(path)
    return path
