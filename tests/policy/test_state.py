"""A store's compiled state and the one freshness rule for its entity snapshot."""

from __future__ import annotations

from dataclasses import replace

from meshauth.policy.cedar import Entities
from meshauth.policy.snapshot import Snapshot
from meshauth.policy.state import compile_state, is_current
from meshauth.policy.stores import StoreRow


def _row(revision: int, entities_version: int) -> StoreRow:
    return StoreRow(
        name="s",
        revision=revision,
        active_version=None,
        schema_text=None,
        schema_format=None,
        entities_version=entities_version,
        deleted=False,
    )


def test_snapshot_is_current_only_at_the_states_revision_and_entities_version() -> None:
    """A snapshot serves only the exact (revision, entities_version) the state is at: after an
    entity write or a new revision (its schema decides how entities parse) it is stale."""
    state = compile_state(_row(3, 5), "")
    snap = Snapshot(
        revision=3, entities_version=5, handle=Entities.from_json_str("[]", None), action_parents={}, size=0
    )
    assert is_current(snap, state)
    assert not is_current(replace(snap, entities_version=4), state)
    assert not is_current(replace(snap, revision=2), state)
    assert not is_current(None, state)
