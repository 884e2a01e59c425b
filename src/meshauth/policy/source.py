"""Cedar policy text: where each policy is, and where a syntax error is.

cedarpy's errors carry a message but no source location, so we find locations ourselves: a small
lexer splits the text into statements (Cedar numbers policies ``policy0``, ``policy1``, … in that
order); the first statement that fails alone holds the error, and within it the token the message
names (``unexpected token `}` ``) is found by re-parsing cut-down copies of the statement.

The same lexer measures each policy against the upload limits (``source_limits.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from meshauth.policy.cedar import PolicySet

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n\r]*)
  | (?P<string>"(?:[^"\\]|\\.)*"?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d+)
  | (?P<op>::|==|!=|<=|>=|&&|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Location:
    line: int  # 1-based
    column: int  # 1-based, in characters
    offset: int  # 0-based character offset into the text


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Statement:
    """One policy or template: from its first annotation to its ``;``."""

    start: int
    end: int
    tokens: tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class SourceError:
    message: str
    location: Location
    policy_id: str | None = None
    annotation_id: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "message": self.message,
            "policy_id": self.policy_id,
            "id": self.annotation_id,
            "line": self.location.line,
            "column": self.location.column,
            "offset": self.location.offset,
        }


def iter_tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text`` in order, layout and comments left out (a string is one token)."""
    for m in _TOKEN.finditer(text):
        if m.lastgroup not in ("ws", "comment"):
            yield Token(m.start(), m.end(), m.group())


def tokens(text: str) -> list[Token]:
    return list(iter_tokens(text))


def statements(text: str) -> list[Statement]:
    """Split into statements at top-level ``;`` (strings and comments are skipped by the lexer)."""
    result: list[Statement] = []
    current: list[Token] = []
    for tok in tokens(text):
        current.append(tok)
        if tok.text == ";":
            result.append(Statement(current[0].start, tok.end, tuple(current)))
            current = []
    if current:
        result.append(Statement(current[0].start, current[-1].end, tuple(current)))
    return result


# ``@id("x")`` among the annotations a statement opens with (other annotations may come first).
# Possessive: with ``\s*`` on both sides of an absent value, each ``@a   `` could split its blanks
# two ways, and a statement without ``@id`` tried every split — 8 such annotations took 15 s (GIL held).
_ID_ANNOTATION = re.compile(r'(?:@\w++\s*+(?:\(\s*+"(?:[^"\\]|\\.)*+"\s*+\))?+\s*+)*?@id\s*\(\s*"((?:[^"\\]|\\.)*)"')


def id_at(text: str, offset: int) -> str | None:
    """The ``@id("…")`` of the statement starting at ``offset``, when it opens with one."""
    m = _ID_ANNOTATION.match(text, offset)
    return m.group(1) if m else None


def location(text: str, offset: int) -> Location:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(line, column, offset)


_UNEXPECTED = re.compile(r"unexpected token `(.+?)`")
_QUOTED = re.compile(r"`([^`]+)`|: (\S+)$")


def _error_of(text: str) -> str | None:
    try:
        PolicySet.from_str(text)
    except ValueError as exc:
        return str(exc)
    return None


def _culprit(text: str, stmt: Statement, message: str) -> int:
    """The offset the parser's ``message`` is about, within the failing statement ``stmt``.

    The parser recovers from errors and reports the last one it meets, so prefixes cannot be tested
    directly; instead each token the message names is tried in order: cutting the statement right
    after it (and closing it with ``;``) reproduces the same complaint only at the real culprit.
    """
    toks = stmt.tokens
    if "end of input" in message:
        return toks[-1].end
    m = _UNEXPECTED.search(message)
    if m:
        for tok in toks:
            if tok.text == m.group(1):
                again = _error_of(text[stmt.start : tok.end] + " ;")
                if again is not None and m.group(0) in again:
                    return tok.start
        return stmt.start
    for q in _QUOTED.finditer(message):
        word = q.group(1) or q.group(2)
        for tok in toks:
            if tok.text == word or tok.text == f'"{word}"':
                return tok.start
    return stmt.start


def syntax_errors(text: str, message: str) -> list[SourceError]:
    """Locate the parse failure ``message`` that ``PolicySet.from_str(text)`` raised.

    Each statement is parsed alone; the first that fails is the one reported, pinned to the token
    its message names when that can be found, else to the statement's start.
    """
    stmts = statements(text)
    for index, stmt in enumerate(stmts):
        own = _error_of(text[stmt.start : stmt.end])
        if own is None:
            continue
        return [SourceError(own, location(text, _culprit(text, stmt, own)), f"policy{index}")]
    # Every statement parses alone: the failure is in how they combine.
    end = stmts[-1].end if stmts else 0
    return [SourceError(message, location(text, end))]


def statement_location(text: str, policy_id: str) -> Location | None:
    """Where Cedar's positional ``policyN`` starts in ``text``."""
    if not policy_id.startswith("policy") or not policy_id[6:].isdigit():
        return None
    index = int(policy_id[6:])
    stmts = statements(text)
    if index >= len(stmts):
        return None
    return location(text, stmts[index].start)
