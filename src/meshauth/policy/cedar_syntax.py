"""Cedar policy text read without the engine: statements, uid literals, the scope head.

Why text rather than Cedar's typed nodes: ``PolicySet.to_pst()`` refuses valid policies
(``decimal("1", "2", "3")`` parses and only errors when evaluated — issue 7), and converting 100,000
policies through it or through Cedar's JSON takes 20–25 s, against ~1 s here. Whatever these
expressions cannot read exactly raises :class:`Unreadable`, and callers ask Cedar instead.
"""

from __future__ import annotations

import re

from meshauth.policy.cedar import Uid

STRING = r'"(?:[^"\\]|\\.)*"'
# Cedar ends a line comment at ``\n`` *or* ``\r`` (policies and schemas alike). Reading a lone ``\r`` as
# inside the comment hid from these expressions code that Cedar compiles: ``permit(…) //\r; forbid(…)``
# was one statement here and two policies in Cedar, so the scope index never evaluated the forbid.
# Possessive (``*+``), as Cedar reads them: a comment always runs to the end of its line, and layout
# is never given back. Backtracking let ``////…`` after a word be read as any split into comments
# (2^(n/2) ways): 64 slashes held the GIL, and so the whole worker, for hours.
COMMENT = r"//[^\n\r]*+"
WS = rf"(?:\s|{COMMENT})*+"
IDENT = r"[_A-Za-z][_A-Za-z0-9]*"
# Possessive too: a path is never given back in part (what follows one is never ``::`` + a name).
PATH = rf"{IDENT}(?:{WS}::{WS}{IDENT})*+"
UID = rf"{PATH}{WS}::{WS}{STRING}"
# One statement: everything up to a ``;`` outside strings and comments. :func:`statements` matches
# it only where the previous one ended, so nothing is looked for inside a comment (a trailing
# ``//permit(…);`` is no policy to Cedar, and once was one here).
_STATEMENT = re.compile(r'(?P<statement>(?:[^;"/]++|"(?:[^"\\]++|\\.)*+"|//[^\n\r]*+|/)*+;)')


def _entity_constraint(var: str) -> str:
    slot = rf"\?{var}"
    return (
        rf"(?:(?P<{var}_op>==|in){WS}(?:(?P<{var}_eq>{PATH}){WS}::{WS}{STRING}|{slot})"
        rf"|is{WS}(?P<{var}_is>{PATH})(?:{WS}in{WS}(?:{UID}|{slot}))?)?"
    )


HEAD = re.compile(
    rf"{WS}(?P<annotations>(?:@{WS}{IDENT}{WS}(?:\({WS}{STRING}{WS}\){WS})?)*)"
    rf"(?P<effect>permit|forbid){WS}\({WS}"
    rf"principal{WS}{_entity_constraint('principal')}{WS},{WS}"
    rf"action{WS}(?:(?P<action_op>==|in){WS}(?P<action_uid>{UID})"
    rf"|in{WS}\[(?P<action_list>{WS}(?:{UID}{WS}(?:,{WS}{UID}{WS})*)?)\])?{WS},{WS}"
    rf"resource{WS}{_entity_constraint('resource')}{WS}\)"
)
UID_PARTS = re.compile(rf"(?P<type>{PATH}){WS}::{WS}(?P<id>{STRING})")
_LAYOUT = re.compile(rf"\s+|{COMMENT}")


class Unreadable(Exception):
    """The head is valid Cedar that the expression reads ambiguously: ask Cedar instead."""


def plain(literal: str) -> str:
    """A Cedar string literal's value; escapes are left to Cedar (exactness over speed)."""
    if "\\" in literal:
        raise Unreadable
    return literal[1:-1]


def layout_free(text: str) -> str:
    return _LAYOUT.sub("", text)


def read_uid(text: str) -> Uid:
    m = UID_PARTS.fullmatch(text.strip())
    if m is None:
        raise Unreadable
    return (layout_free(m["type"]), plain(m["id"]))


def statements(text: str) -> list[str]:
    """The text of each statement, in Cedar's order (``policyN`` is the N-th).

    Matched from where the last one ended rather than searched for: a search retried the failing
    match at every character of the layout after the last ``;`` (quadratic: 40,000 blanks took 7 s).
    Where no statement can be matched, none follows (from there on the text has no ``;`` outside a
    string or comment), so the rest is layout."""
    out: list[str] = []
    pos = 0
    while (m := _STATEMENT.match(text, pos)) is not None:
        out.append(m["statement"])
        pos = m.end()
    return out
