"""Settings described in words for an operator: the accepted form of a field, and values as shown in
problem lines and in ``meshauth config check``, credentials masked."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from meshauth.config import Settings

# Field names holding credentials whose type is not SecretStr: shown masked all the same.
SECRET_WORDS = ("token", "secret", "password", "credential")
MASK = "***"
# URL query parameters whose names contain one of these are credentials (password, sslkey, auth_token).
SECRET_PARAMETER_WORDS = ("pass", "secret", "token", "key")
# What an unset optional setting means, so ``config check`` shows the effective choice.
UNSET_MEANS = {
    "database_url": "unset: a SQLite file under var_dir",
    "redis_url": "unset: the embedded Valkey `meshauth up` starts",
    "admin_token": "unset: generated into var_dir/admin-token",
    "key_encryption_key": "unset: signing keys stored unencrypted",
}


def accepted_form(info: FieldInfo) -> str:
    """The accepted form of a setting in words, from its type and bounds."""
    annotation = info.annotation
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else annotation
    form = _form(annotation, info)
    return f"{form}, or unset" if optional else form


def _form(annotation: Any, info: FieldInfo) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "a whole number" + _bounds(info)
    if annotation is float:
        return "a number" + _bounds(info)
    if origin in (tuple, list, set, frozenset):
        return 'a JSON list, e.g. ["a", "b"]'
    if origin is dict:
        return 'a JSON object, e.g. {"a": 1}'
    if annotation is Path:
        return "a file-system path"
    return "text"


def _bounds(info: FieldInfo) -> str:
    low: object = None
    high: object = None
    low_open = high_open = False
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            low, low_open = item.gt, True
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Lt):
            high, high_open = item.lt, True
    if low is not None and high is not None and not low_open and not high_open:
        return f" from {low} to {high}"
    parts = []
    if low is not None:
        parts.append(f"greater than {low}" if low_open else f"at least {low}")
    if high is not None:
        parts.append(f"less than {high}" if high_open else f"at most {high}")
    return " " + " and ".join(parts) if parts else ""


def is_secret(name: str, value: object) -> bool:
    if isinstance(value, SecretStr):
        return True
    info = Settings.model_fields.get(name)
    if info is not None and "SecretStr" in str(info.annotation):
        return True
    return any(word in name for word in SECRET_WORDS) and isinstance(value, str | tuple | list)


def mask_url(text: str) -> str:
    """``scheme://user:password@host/…?password=…`` → ``scheme://user:***@host/…?password=***``.

    Split by hand, not with ``urlsplit``: an invalid URL (an unclosed ``[::1``) is shown in its problem line
    and must be masked all the same. Drivers also read credentials from query parameters (libpq's
    ``password``, ``sslkey``; redis-py's ``password``), so those are masked by name too.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _mask_mistyped(text)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "@" not in rest[:end] and "@" in rest[end:].split("=", 1)[0]:
        # Credentials with an unencoded '/' or '?' (the URL is refused for it): mask up to their '@'.
        last_at = rest.rfind("@", 0, len(rest[end:].split("=", 1)[0]) + end)
        end = min((i for i in (rest.find(c, last_at) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_mark, fragment = query.partition("#")
        query = "&".join(_mask_parameter(p) for p in query.split("&")) + hash_mark + fragment
    return f"{scheme}://{netloc}{path}{qmark}{query}"


def _mask_mistyped(text: str) -> str:
    """A value without ``://`` but with an ``@``: a URL with its slashes mistyped (``redis:/app:pw@cache``,
    ``postgresql//app:pw@db``) or left out (``app:pw@db``). Where the user name ends cannot be told, so all
    before the last ``@`` but a leading scheme name is hidden (more than the password: the URL is refused anyway)."""
    at = text.rfind("@")
    if at < 0:
        return text
    name = 0
    while name < at and (text[name].isascii() and (text[name].isalnum() or text[name] in "+.-")):
        name += 1
    path, qmark, query = text[at + 1 :].partition("?")
    if qmark:
        query = "&".join(_mask_parameter(p) for p in query.split("&"))
    return f"{text[:name]}:{MASK}@{path}{qmark}{query}"


def _mask_parameter(parameter: str) -> str:
    name, eq, _value = parameter.partition("=")
    if eq and any(word in name.lower() for word in SECRET_PARAMETER_WORDS):
        return f"{name}={MASK}"
    return parameter


def show(name: str, value: object) -> str:
    """A value for a problem line: quoted as given, credentials masked."""
    if value is None or value == "" or value == ():
        return repr(value)
    if is_secret(name, value):
        return MASK
    if isinstance(value, str):
        return repr(mask_url(value))
    if isinstance(value, tuple | list):  # policy_urls: a list of URLs
        return repr([mask_url(v) if isinstance(v, str) else v for v in value])
    return repr(value)


def display(name: str, value: object) -> str:
    """An effective value for ``config check``: as an operator would write it, credentials masked."""
    if value is None:
        return f"({UNSET_MEANS.get(name, 'unset')})"
    if is_secret(name, value) and value not in ("", ()):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps([mask_url(v) if isinstance(v, str) else v for v in value])
    if isinstance(value, str):
        return mask_url(value)
    return str(value)
