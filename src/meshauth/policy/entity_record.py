"""A stored entity in Cedar's JSON form: its record, its SQL key, and the uids it references."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from meshauth.policy.cedar import Uid

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def uid_key(uid: Uid) -> str:
    """The canonical, collision-free SQL key of a uid (JSON of ``[type, id]``)."""
    return _encoder.encode(uid).decode()


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """A stored entity, ready for the engine: its Cedar JSON, and the uids it points to."""

    uid: Uid
    json: bytes
    parents: tuple[Uid, ...]
    refs: tuple[Uid, ...]

    @classmethod
    def from_json(cls, raw: bytes | str) -> EntityRecord:
        data = _decoder.decode(raw)
        u = data["uid"]
        parents = tuple((p["type"], p["id"]) for p in data.get("parents", ()))
        refs = tuple(entity_refs([data.get("attrs", {}), data.get("tags", {})]))
        data_bytes = raw.encode() if isinstance(raw, str) else raw
        return cls((u["type"], u["id"]), data_bytes, parents, refs)

    def with_attrs(self, overrides: Mapping[str, Any], *, stored_wins: bool = False) -> bytes:
        """This entity's JSON with ``overrides`` merged over its attributes, or, with
        ``stored_wins``, under them (a request may add attributes, never replace a stored one)."""
        data = _decoder.decode(self.json)
        stored = data.get("attrs", {})
        data["attrs"] = {**overrides, **stored} if stored_wins else {**stored, **overrides}
        encoded: bytes = _encoder.encode(data)
        return encoded


def bare_entity(uid: Uid, attrs: Mapping[str, Any]) -> bytes:
    """JSON for an entity the store does not hold, built from request properties."""
    encoded: bytes = _encoder.encode({"uid": {"type": uid[0], "id": uid[1]}, "attrs": dict(attrs), "parents": []})
    return encoded


def entity_refs(value: Any) -> list[Uid]:
    """Entity uids referenced in a Cedar JSON value (``{"__entity": …}`` or a bare ``{type, id}``)."""
    found: list[Uid] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            inner = v.get("__entity")
            if isinstance(inner, dict):
                v = inner
            t, i = v.get("type"), v.get("id")
            if len(v) == 2 and isinstance(t, str) and isinstance(i, str):
                found.append((t, i))
                continue
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found
