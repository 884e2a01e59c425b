"""What Cedar can express as an entity uid, checked at the edge with precise messages."""

from __future__ import annotations

import functools
import re

from meshauth.policy.errors import bad_request

MAX_ID_CHARS = 1024
MAX_TYPE_CHARS = 256
_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*\Z")
_RESERVED = frozenset({"true", "false", "if", "then", "else", "in", "is", "like", "has"})
_STORE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def type_problem(value: object) -> str | None:
    """Why ``value`` is not a Cedar entity type name, or None when it is one."""
    if not isinstance(value, str):
        return "must be a string"
    return _type_problem(value)


@functools.lru_cache(maxsize=4096)  # a store has few types; checking them is on every request
def _type_problem(value: str) -> str | None:
    if len(value) > MAX_TYPE_CHARS:
        return f"is longer than {MAX_TYPE_CHARS} characters"
    if not _TYPE.match(value):
        return f"{value!r} is not a Cedar entity type (identifiers joined by '::', e.g. App::User)"
    for part in value.split("::"):
        if part in _RESERVED:
            return f"{value!r} uses the reserved word {part!r}"
        if "__cedar" in part:
            return f"{value!r} uses the reserved name '__cedar'"
    return None


def id_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    return None


def is_valid_uid(etype: object, eid: object) -> bool:
    """Whether ``check_uid`` would accept this uid: two type checks and a cache hit."""
    return type(etype) is str and type(eid) is str and len(eid) <= MAX_ID_CHARS and _type_problem(etype) is None


def check_uid(field: str, etype: object, eid: object) -> tuple[str, str]:
    """``(type, id)``, or a 400 naming ``field.type`` / ``field.id``."""
    if is_valid_uid(etype, eid):
        assert isinstance(etype, str)
        assert isinstance(eid, str)
        return etype, eid
    problem = type_problem(etype)
    if problem:
        raise bad_request(f"{field}.type", problem)
    problem = id_problem(eid)
    if problem:
        raise bad_request(f"{field}.id", problem)
    assert isinstance(etype, str)
    assert isinstance(eid, str)
    return etype, eid


# PostgreSQL text cannot hold a NUL (SQLite can): what is stored is refused with it at the edge, so both
# databases give the same 400 and the driver never answers a false "database down" 503.
NUL = "\x00"
NUL_PROBLEM = "contains a NUL character, which cannot be stored"


def refuse_nul(field: str, text: str) -> str:
    if NUL in text:
        raise bad_request(field, NUL_PROBLEM)
    return text


def nul_field(value: object, field: str) -> str | None:
    """The first field (``entities[0].attrs.team``) of a decoded JSON value whose key or string holds a NUL."""
    if isinstance(value, str):
        return field if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return field
            found = nul_field(item, f"{field}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = nul_field(item, f"{field}[{n}]")
            if found is not None:
                return found
    return None


def check_store(name: str) -> str:
    if not _STORE.match(name):
        raise bad_request("store", "a store name is 1-64 letters, digits, '_', '.', '-' (starting alphanumeric)")
    return name


_FULL_UID = re.compile(r'(?P<type>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"(?P<id>(?:[^"\\]|\\.)*)"\Z')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "u" and s[i + 2 : i + 3] == "{":
                end = s.index("}", i)
                code = int(s[i + 3 : end], 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise ValueError(f"\\u{{{s[i + 3 : end]}}} is not a Unicode scalar value")
                out.append(chr(code))
                i = end + 1
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def action_uid(field: str, name: str) -> tuple[str, str]:
    """An action name as a uid: ``Action::"name"``, or a full Cedar uid (``App::Action::"view"``) read
    and unescaped; a 400 naming ``field`` when it is neither."""
    if name.endswith('"') and '::"' in name:
        m = _FULL_UID.match(name)
        if m is None:
            raise bad_request(field, f'{name!r} looks like a Cedar uid but is not one (Type::"id")')
        try:
            return check_uid(field, m["type"], _unescape(m["id"]))
        except (ValueError, IndexError):
            raise bad_request(field, f"{name!r} has a bad escape in its id") from None
    return check_uid(field, "Action", name)
