"""Locating policies and syntax errors in Cedar text (cedarpy gives messages, not locations)."""

from __future__ import annotations

import cedarpy
import pytest

from meshauth.policy.source import statement_location, statements, syntax_errors


def locate(text: str) -> tuple[int, int, str]:
    with pytest.raises(ValueError, match=r"\w") as info:
        cedarpy.PolicySet.from_str(text)
    (err,) = syntax_errors(text, str(info.value))
    return err.location.line, err.location.column, err.message


def test_statements_ignore_semicolons_in_strings_and_comments() -> None:
    """A ';' inside a string or a comment does not end a policy."""
    text = 'permit(principal, action == Action::"a;b", resource); // one; two\nforbid(principal, action, resource);'
    assert len(statements(text)) == 2


def test_statement_location_of_positional_id() -> None:
    """policyN is the N-th statement; its location is where it starts (annotations included)."""
    text = 'permit(principal, action, resource);\n\n@id("x")\nforbid(principal, action, resource);'
    loc = statement_location(text, "policy1")
    assert loc is not None
    assert (loc.line, loc.column) == (3, 1)
    assert statement_location(text, "policy9") is None


def test_unexpected_token_is_located() -> None:
    """An unexpected token is reported at its own line and column."""
    text = "permit(principal, action, resource);\n\npermit(principal, action, resource) when { 1 + };\n"
    assert locate(text)[:2] == (3, 48)


def test_repeated_token_finds_the_offending_occurrence() -> None:
    """When the named token occurs several times, the one that breaks the parse is reported."""
    text = "forbid (principal, action, resource);\nforbid (principal,,action,resource);"
    line, column, message = locate(text)
    assert (line, column) == (2, 19)
    assert "`,`" in message


def test_unterminated_policy_points_at_its_end() -> None:
    """A missing ';' is reported where the text ends."""
    assert locate("permit(principal, action, resource)")[:2] == (1, 36)


def test_unknown_function_points_into_the_policy() -> None:
    """An error found after parsing (unknown function) is reported at the name when it can be found."""
    assert locate("permit(principal, action, resource) when { foo(1) };")[:2] == (1, 44)
