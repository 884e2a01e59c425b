"""A stored entity's record: the references it holds."""

from __future__ import annotations

from meshauth.policy.entity_record import entity_refs


def test_entity_refs_finds_both_forms() -> None:
    """References are found as ``{"__entity": …}`` and as bare ``{type, id}``, nested anywhere."""
    attrs = {"owner": {"__entity": {"type": "User", "id": "a"}}, "team": [{"type": "Group", "id": "g"}], "n": 1}
    assert sorted(entity_refs(attrs)) == [("Group", "g"), ("User", "a")]
