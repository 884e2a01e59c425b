"""SecondSight: a memo's keys admitted from their second sighting, with a bounded set of notes."""

from __future__ import annotations

from meshauth.admission import SecondSight


def test_a_key_is_admitted_from_its_second_sighting() -> None:
    gate = SecondSight(100)
    assert [gate.admit(("GET", "/a")) for _ in range(3)] == [False, True, True]
    assert gate.admit(("GET", "/b")) is False


def test_notes_are_bounded_and_start_again() -> None:
    """At the limit the notes are cleared: memory stays bounded, a key may wait one more sighting."""
    gate = SecondSight(10)
    for i in range(10):
        gate.admit(i)
    assert len(gate._seen) == 10
    assert gate.admit("new") is False and len(gate._seen) == 1  # cleared, then noted
    assert gate.admit(0) is False  # forgotten: noted again
    assert gate.admit(0) is True
