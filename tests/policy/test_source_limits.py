"""The upload limits on policy text: the quick pass and the locating pass measure alike."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.policy.source_limits import Limits, _located, _within

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
