"""What Cedar can express as an entity uid, checked at the edge with precise messages."""

from __future__ import annotations

import functools
import re

import msgspec

from meshauth.policy.cedar import policies_json
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
        if part == "__cedar":  # Cedar reserves this component exactly (`x__cedar`, `__cedarx` are names)
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


@functools.lru_cache(maxsize=1024)  # escaped action names are rare and repeat
def _cedar_id(literal: str) -> str | None:
    """The id Cedar reads from the string literal ``"literal"`` (escapes in it), or None where Cedar
    refuses it. Cedar's own parser, not a copy of its escape grammar: a copy read ``\\x64`` as "x64"
    where Cedar reads "d" (a forbid on ``Action::"delete"`` missed ``Action::"\\x64elete"``). ``literal``
    holds no unescaped quote (``_FULL_UID``), so it stays one literal in the policy text."""
    try:
        tree = msgspec.json.decode(policies_json(f'permit(principal, action == Action::"{literal}", resource);'))
        eid = tree["staticPolicies"]["policy0"]["action"]["entity"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return eid if isinstance(eid, str) else None


def action_uid(field: str, name: str) -> tuple[str, str]:
    """An action name as a uid: ``Action::"name"``, or a full Cedar uid (``App::Action::"view"``) read
    and unescaped; a 400 naming ``field`` when it is neither."""
    if name.endswith('"') and '::"' in name:
        m = _FULL_UID.match(name)
        if m is None:
            raise bad_request(field, f'{name!r} looks like a Cedar uid but is not one (Type::"id")')
        eid = m["id"]
        if "\\" in eid:
            if len(eid) > 10 * MAX_ID_CHARS:  # 10 characters of literal per character of id at most (\\u{10FFFF})
                raise bad_request(f"{field}.id", f"is longer than {MAX_ID_CHARS} characters")
            read = _cedar_id(eid)
            if read is None:
                raise bad_request(field, f"{name!r} has a bad escape in its id")
            eid = read
        return check_uid(field, m["type"], eid)
    return check_uid(field, "Action", name)
