"""Redis URLs that name more than one server: Sentinel and Cluster.

The forms are those of the ``limits`` library (Flask-Limiter's storage URIs), which redisvl,
node-redis and others read the same way:

- ``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>]`` — the Sentinels to ask,
  and the name of the monitored primary (``sentinel monitor <service> …``). ``rediss+sentinel://`` speaks
  TLS to the primary. The credentials are the primary's; Sentinels that want a password of their own get it
  from ``?sentinel_password=…``.
- ``redis+cluster://[[user]:password@]host1:6379,host2:6379`` (``rediss+cluster://`` for TLS) — any
  reachable nodes of the cluster; the client discovers the rest. A cluster has database 0 only.

Parsed here (no redis-py import) so ``config_checks`` refuses a bad one when settings load, and
``redis_client.connect`` builds the client from the same parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
SENTINEL_EXAMPLE = "redis+sentinel://[:password@]sentinel1:26379,sentinel2:26379/mymaster[/0]"
CLUSTER_EXAMPLE = "redis+cluster://[:password@]node1:6379,node2:6379"
MAX_HOSTS = 64


@dataclass(frozen=True)
class Sentinels:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    tls: bool
    sentinel_password: str | None


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


def is_cluster_url(url: str | None) -> bool:
    return url is not None and url.startswith(CLUSTER_SCHEMES)


def hash_tag(prefix: str) -> str | None:
    """The Cluster hash tag every key under ``prefix`` carries (the first ``{…}`` with something inside),
    or None when keys under it could land in different slots."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1)
    return prefix[start + 1 : end] if 0 <= start < end - 1 else None


def parse_ha_url(url: str) -> Sentinels | Cluster | None:
    """The Sentinel or Cluster ``url`` parsed; None for any other scheme. ValueError (the whole message,
    accepted form included) when it is one of these schemes but does not parse."""
    if not url.startswith(SENTINEL_SCHEMES + CLUSTER_SCHEMES):
        return None
    try:
        return _sentinels(url) if url.startswith(SENTINEL_SCHEMES) else _cluster(url)
    except ValueError:
        if credentials_cut(url):
            # The messages quote the host or port they could not read: here that is a piece of the password.
            raise ValueError(CREDENTIALS_CUT) from None
        raise


CREDENTIALS_CUT = "a '/' or '?' in the user name or password must be percent-encoded (%2F, %3F)"


def credentials_cut(url: str) -> bool:
    """Whether an '@' comes after the first '/' or '?' behind the scheme (before any '='): credentials with an
    unencoded '/' or '?' in them, which every parser reads as a host or port that is part of the password."""
    rest = url.partition("://")[2]
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    if not ends:
        return False
    end = min(ends)
    return "@" not in rest[:end] and "@" in rest[end:].split("=", 1)[0]


def _sentinels(url: str) -> Sentinels:
    scheme, rest = url.split("://", 1)
    netloc, path, query = _split(rest)
    username, password, hosts = _netloc(netloc, 26379, SENTINEL_EXAMPLE)
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts or len(parts) > 2 or not parts[0]:
        raise ValueError(f"a Sentinel URL names the monitored primary after the hosts; expected {SENTINEL_EXAMPLE}")
    db = 0
    if len(parts) == 2:
        if not _digits(parts[1], 2) or int(parts[1]) > 15:
            raise ValueError(f"database {parts[1][:20]!r} is not a number from 0 to 15; expected {SENTINEL_EXAMPLE}")
        db = int(parts[1])
    extra = _query(query, {"sentinel_password"}, SENTINEL_EXAMPLE)
    return Sentinels(
        hosts=hosts,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        tls=scheme == "rediss+sentinel",
        sentinel_password=extra.get("sentinel_password"),
    )


def _cluster(url: str) -> Cluster:
    scheme, rest = url.split("://", 1)
    netloc, path, query = _split(rest)
    username, password, hosts = _netloc(netloc, 6379, CLUSTER_EXAMPLE)
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only, not {path[:20]!r}; expected {CLUSTER_EXAMPLE}")
    _query(query, set(), CLUSTER_EXAMPLE)
    return Cluster(hosts=hosts, username=username, password=password, tls=scheme == "rediss+cluster")


def _split(rest: str) -> tuple[str, str, str]:
    rest, _, query = rest.partition("?")
    if "#" in rest or "#" in query:
        raise ValueError("a Redis URL has no fragment ('#'); percent-encode it in a password as %23")
    # As in redis-py's own URLs, a '/' in the credentials must be percent-encoded (%2F): the first '/' ends the hosts.
    slash = rest.find("/")
    if slash < 0:
        return rest, "", query
    return rest[:slash], rest[slash:], query


def _netloc(netloc: str, default_port: int, example: str) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    names = hostlist.split(",")
    if not hostlist or any(not n for n in names):
        raise ValueError(f"no host (or an empty one between commas); expected {example}")
    if len(names) > MAX_HOSTS:
        raise ValueError(f"{len(names)} hosts; at most {MAX_HOSTS} are accepted; expected {example}")
    return username, password, tuple(_host(n, default_port, example) for n in names)


def _host(text: str, default_port: int, example: str) -> tuple[str, int]:
    if text.startswith("["):
        host, close, after = text[1:].partition("]")
        if not close or not host or (after and not after.startswith(":")):
            raise ValueError(f"host {text[:60]!r} is not [IPv6]:port; expected {example}")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = text.partition(":")
        if not host or ":" in port_text:
            raise ValueError(f"host {text[:60]!r} is not host:port (bracket an IPv6 address); expected {example}")
    if not all(c.isascii() and (c.isalnum() or c in "-._:") for c in host):
        raise ValueError(f"host {host[:60]!r} has characters a host name cannot have; expected {example}")
    if not port_text:
        return host, default_port
    if not _digits(port_text, 5) or not 1 <= int(port_text) <= 65535:
        raise ValueError(
            f"port {port_text[:20]!r} of {host[:60]!r} is not a number from 1 to 65535; expected {example}"
        )
    return host, int(port_text)


def _digits(text: str, most: int) -> bool:
    """ASCII digits only ('²' and '٣' are digits to str.isdigit), and few enough for int() to take."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _query(query: str, allowed: set[str], example: str) -> dict[str, str]:
    try:
        found = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        # Not quoted: the query may hold sentinel_password.
        raise ValueError(f"the query does not parse (name=value pairs joined by '&'); expected {example}") from None
    for name, values in found.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"unknown URL option {name[:40]!r} (known: {known}); expected {example}")
        if len(values) != 1:
            raise ValueError(f"URL option {name!r} given {len(values)} times; give it once")
    return {name: values[0] for name, values in found.items()}
