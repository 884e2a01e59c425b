"""Validation of an entity upload (Cedar's JSON entity format) before anything is written."""

from __future__ import annotations

from typing import Any

import msgspec

from meshauth.policy.cedar import Uid
from meshauth.policy.errors import bad_request
from meshauth.policy.names import NUL_PROBLEM, check_uid, nul_field

_encoder = msgspec.json.Encoder()


def normalize_upload(items: object) -> list[tuple[Uid, bytes]]:
    """Check an upload in Cedar's JSON entity format; the last of duplicate uids wins.

    Raises a 400 naming the first bad field (``entities[3].uid.type``).
    """
    if not isinstance(items, list):
        raise bad_request("entities", "must be a JSON array of entities")
    out: dict[Uid, bytes] = {}
    for n, item in enumerate(items):
        field = f"entities[{n}]"
        if not isinstance(item, dict):
            raise bad_request(field, "must be an object with uid, attrs, parents")
        unknown = set(item) - {"uid", "attrs", "parents", "tags"}
        if unknown:
            raise bad_request(f"{field}.{sorted(unknown)[0]}", "is not a field of a Cedar entity")
        uid_obj = item.get("uid")
        if isinstance(uid_obj, dict) and "__entity" in uid_obj:
            uid_obj = uid_obj["__entity"]
        if not isinstance(uid_obj, dict):
            raise bad_request(f"{field}.uid", 'must be {"type": …, "id": …}')
        uid = check_uid(f"{field}.uid", uid_obj.get("type"), uid_obj.get("id"))
        attrs = item.get("attrs", {})
        if not isinstance(attrs, dict):
            raise bad_request(f"{field}.attrs", "must be an object")
        parents_in = item.get("parents", [])
        if not isinstance(parents_in, list):
            raise bad_request(f"{field}.parents", "must be an array of entity uids")
        parents = []
        for k, p in enumerate(parents_in):
            if isinstance(p, dict) and "__entity" in p:
                p = p["__entity"]
            if not isinstance(p, dict):
                raise bad_request(f"{field}.parents[{k}]", 'must be {"type": …, "id": …}')
            pt, pi = check_uid(f"{field}.parents[{k}]", p.get("type"), p.get("id"))
            parents.append({"type": pt, "id": pi})
        entity: dict[str, Any] = {"uid": {"type": uid[0], "id": uid[1]}, "attrs": attrs, "parents": parents}
        if "tags" in item:
            if not isinstance(item["tags"], dict):
                raise bad_request(f"{field}.tags", "must be an object")
            entity["tags"] = item["tags"]
        encoded = _encoder.encode(entity)
        # The encoder writes a NUL as the escape \u0000: searching the bytes keeps the walk off the common path.
        if b"\\u0000" in encoded:
            where = nul_field(entity, field)
            if where is not None:
                raise bad_request(where, NUL_PROBLEM)
        out.pop(uid, None)
        out[uid] = encoded
    return list(out.items())
