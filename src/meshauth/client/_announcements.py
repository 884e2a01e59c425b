"""The announcement format shared by the publisher (:func:`announce`), the follower and cache warming:
where a store's state lives in Redis, and how one is written. JSON arrays
``[store, revision, entities_version]`` (never pickle: Redis is shared); anything else decodes to None.

Two more kinds on the same stream, for staged warming (``_staging.py``); a follower that does not
know a kind skips it (``StateFollower._handle``), so older clients ignore them safely:

- ``policy_staged`` ``[store, version]``: version ``version`` is about to be activated (or was just
  uploaded): warm for it now;
- ``policy_activated`` ``[store, revision, entities_version, version]``: revision ``revision`` is
  ``version`` activated on ``revision - 1`` and nothing else changed; always followed by the plain
  ``policy_state`` of that revision (what older clients act on)."""

from __future__ import annotations

import json

from meshauth.client._models import STATE_MAX, State

__all__ = [
    "DEFAULT_PREFIX",
    "KIND",
    "KIND_ACTIVATED",
    "KIND_STAGED",
    "decode",
    "decode_activated",
    "decode_staged",
    "encode",
    "names",
]

KIND = "policy_state"
KIND_STAGED = "policy_staged"
KIND_ACTIVATED = "policy_activated"
_VERSION_MAX = 2**31 - 1
DEFAULT_PREFIX = "meshauth:"
# What an announcement can be at most: a store name (64 characters that JSON writes as they are) and
# three numbers. Anything longer is garbage, refused before it is parsed (a huge value held the loop).
MAX_LENGTH = 256


def names(prefix: str) -> tuple[str, str]:
    """(the announcements stream, the hash of every store's newest state)."""
    return f"{prefix}policy-state:stream", f"{prefix}policy-state"


def encode(store: str, state: State) -> str:
    return json.dumps([store, state.revision, state.entities_version], separators=(",", ":"))


def _load(value: object) -> object:
    """The JSON document of an announcement, or None. Never raises: a value nested past the recursion
    limit raised RecursionError out of the follower's resync (which then failed again at every
    rebuild, so no announcement was applied any more) and out of ``PolicyClient.warm``."""
    if not isinstance(value, str | bytes) or len(value) > MAX_LENGTH:
        return None
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _number(value: object) -> bool:
    """A revision or entities version a store can have (``STATE_MAX``)."""
    return type(value) is int and 0 <= value <= STATE_MAX


def decode(value: str | bytes) -> tuple[str, State] | None:
    doc = _load(value)
    if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], str)):
        return None
    store, revision, ev = doc
    if not _number(revision) or not (ev is None or _number(ev)):
        return None
    return store, State(revision, ev)


def _version(value: object) -> bool:
    return type(value) is int and 1 <= value <= _VERSION_MAX


def decode_staged(value: str | bytes) -> tuple[str, int] | None:
    """``(store, version)`` of a ``policy_staged`` announcement, or None."""
    doc = _load(value)
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], str) and _version(doc[1])):
        return None
    return doc[0], doc[1]


def decode_activated(value: str | bytes) -> tuple[str, State, int] | None:
    """``(store, state, version)`` of a ``policy_activated`` announcement, or None (the entities
    version must be known: staged answers are used only for an exact one)."""
    doc = _load(value)
    if not (isinstance(doc, list) and len(doc) == 4 and isinstance(doc[0], str) and _version(doc[3])):
        return None
    store, revision, ev, version = doc
    if not (_number(revision) and _number(ev)) or revision < 1:
        return None
    return store, State(revision, ev), version
