"""The announcement format shared by the publisher (:func:`announce`), the follower and cache warming:
where a store's state lives in Redis, and how one is written. JSON arrays
``[store, revision, entities_version]`` (never pickle: Redis is shared); anything else decodes to None."""

from __future__ import annotations

import json

from meshauth.client._models import State

__all__ = ["DEFAULT_PREFIX", "KIND", "decode", "encode", "names"]

KIND = "policy_state"
DEFAULT_PREFIX = "meshauth:"


def names(prefix: str) -> tuple[str, str]:
    """(the announcements stream, the hash of every store's newest state)."""
    return f"{prefix}policy-state:stream", f"{prefix}policy-state"


def encode(store: str, state: State) -> str:
    return json.dumps([store, state.revision, state.entities_version], separators=(",", ":"))


def decode(value: str | bytes) -> tuple[str, State] | None:
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], str)):
        return None
    store, revision, ev = doc
    if type(revision) is not int or not (ev is None or type(ev) is int):
        return None
    return store, State(revision, ev)
