"""Locating policies and syntax errors in Cedar text (cedarpy gives messages, not locations)."""

from __future__ import annotations

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.policy.source import Limits, _located, _within, statement_location, statements, syntax_errors


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


_PIECES = [
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ";",
    "&&",
    "||",
    "==",
    "!=",
    "<=",
    ".",
    "!",
    "-",
    "in",
    "index",
    "has",
    "if",
    "then",
    "true",
    '"(;"',
    "// ((;\n",
    " ",
    "\n",
    "::",
    "x",
    "1",
]


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=120),
    sep=st.sampled_from(["", " "]),
    nesting=st.integers(1, 6),
    size=st.integers(1, 12),
)
def test_limit_check_fast_pass_agrees_with_the_located_one(
    pieces: list[str], sep: str, nesting: int, size: int
) -> None:
    """The quick pass that clears text within the limits and the pass that locates what is over
    them measure the same (else an upload could slip past the limits)."""
    text = sep.join(pieces)
    limits = Limits(max_nesting=nesting, max_expression=size)
    assert _within(text, limits) == (_located(text, limits) == [])
