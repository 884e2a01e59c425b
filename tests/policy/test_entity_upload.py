"""Entity uploads are checked field by field before anything is written."""

from __future__ import annotations

import pytest

from meshauth.http import ApiError
from meshauth.policy.entity_record import EntityRecord
from meshauth.policy.entity_upload import normalize_upload
from tests.policy.conftest import entity


def test_normalize_upload_last_duplicate_wins() -> None:
    """Two entries for one uid keep the later one."""
    out = normalize_upload([entity("User:a", {"n": 1}), entity("User:a", {"n": 2})])
    assert len(out) == 1
    assert EntityRecord.from_json(out[0][1]).uid == ("User", "a")
    assert b'"n":2' in out[0][1]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"uid": {"type": "User"}, "attrs": {}, "parents": []}, "entities[0].uid.id"),
        ({"uid": {"type": "has", "id": "x"}}, "entities[0].uid.type"),
        ({"uid": {"type": "User", "id": "x"}, "attrs": []}, "entities[0].attrs"),
        ({"uid": {"type": "User", "id": "x"}, "parents": [{"type": "G"}]}, "entities[0].parents[0].id"),
        ({"uid": {"type": "User", "id": "x"}, "color": "red"}, "entities[0].color"),
        ("User::x", "entities[0]"),
    ],
)
def test_normalize_upload_names_the_bad_field(bad: object, field: str) -> None:
    """Each malformed entity is a 400 naming its exact field."""
    with pytest.raises(ApiError) as info:
        normalize_upload([bad])
    assert info.value.status == 400
    assert info.value.extra["field"] == field
