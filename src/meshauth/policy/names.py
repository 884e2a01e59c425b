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


def check_store(name: str) -> str:
    if not _STORE.match(name):
        raise bad_request("store", "a store name is 1-64 letters, digits, '_', '.', '-' (starting alphanumeric)")
    return name
