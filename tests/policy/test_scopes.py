"""Each policy's scope, read from its text — cross-checked against Cedar's JSON form."""

from __future__ import annotations

import pytest

from meshauth.policy import cedar
from meshauth.policy.scopes import Scope, ask_cedar, read_head


def scope_of(text: str) -> Scope:
    """The scope read from the text — and, as a cross-check, the same as Cedar's JSON form says."""
    read = read_head("policy0", text)
    assert read is not None, text
    assert read.scope == ask_cedar("policy0", text).scope
    return read.scope


def test_scope_of_equality_constraints() -> None:
    """``==`` fixes the action and the entity types."""
    s = scope_of('permit(principal == User::"a", action == Action::"v", resource == App::Doc::"d");')
    assert s == Scope(("Action", "v"), None, "User", "App::Doc")


def test_scope_of_is_and_is_in() -> None:
    """``is T`` and ``is T in E`` fix the type."""
    s = scope_of('permit(principal is User, action, resource is Doc in Folder::"f");')
    assert (s.principal_type, s.resource_type, s.action_eq, s.action_in) == ("User", "Doc", None, None)


def test_scope_of_in_does_not_fix_type() -> None:
    """``in E`` leaves the type open: any type may descend from E."""
    s = scope_of('permit(principal in Group::"g", action in [Action::"a", Action::"b"], resource);')
    assert s.principal_type is None
    assert s.action_in == frozenset({("Action", "a"), ("Action", "b")})


def test_scope_of_layout_and_comments() -> None:
    """Whitespace and comments inside a head read the same as Cedar's JSON form."""
    s = scope_of('@id("x") // c\n permit ( principal is App :: User , action == App::Action :: "v", resource );')
    assert s == Scope(("App::Action", "v"), None, "App::User", None)


def test_escaped_strings_are_left_to_cedar() -> None:
    """An escaped id is not decoded by the expression: Cedar's JSON form is asked instead."""
    text = 'permit(principal, action == Action::"a\\"b", resource);'
    assert read_head("policy0", text) is None
    assert ask_cedar("policy0", text).scope.action_eq == ("Action", 'a"b')


def test_unconvertible_policy_is_read_from_text() -> None:
    """``decimal`` with three arguments: Cedar's typed nodes refuse it, the text gives its scope."""
    text = 'permit(principal, action == Action::"a", resource is Doc) when { decimal("1", "2", "3") == decimal("1") };'
    with pytest.raises(ValueError, match="decimal"):
        cedar.parse_policies(text).to_pst()
    assert scope_of(text) == Scope(("Action", "a"), None, None, "Doc")


@pytest.mark.parametrize(
    "annotations",
    [
        '@id("real") @note("@id(") @x("evil")',  # "@id(" inside another annotation's string
        '@note("@id(") @x("evil") @id("real")',
        '@note("x") // @id("evil")\n @id("real")',
        '@id("real") // @id("evil")\n @note("x")',
    ],
)
def test_the_id_annotation_is_cedars(annotations: str) -> None:
    """``@id`` is read annotation by annotation, never inside another's string or a comment: the id a
    decision names as its reason is the one Cedar gives the policy (an ``@id(`` in a note made the
    display id ``) @x(``)."""
    text = f"{annotations} permit(principal, action, resource);"
    read = read_head("policy0", text)
    assert cedar.id_annotations(text) == {"policy0": "real"}
    assert read is None or read.annotation == "real"


def test_an_action_list_is_read_member_by_member() -> None:
    """A uid inside a comment between the members of ``action in [...]`` is no member (Cedar's reading)."""
    text = 'permit(principal, action in [Action::"a" // Action::"evil"\n, Action::"b"], resource);'
    assert scope_of(text).action_in == frozenset({("Action", "a"), ("Action", "b")})
    assert scope_of('permit(principal, action in [ // Action::"evil"\n], resource);').action_in == frozenset()
