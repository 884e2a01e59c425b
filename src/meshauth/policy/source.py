"""Cedar policy text: where each policy is, and where a syntax error is.

cedarpy's errors carry a message but no source location, so we find locations ourselves: a small
lexer splits the text into statements (Cedar numbers policies ``policy0``, ``policy1``, … in that
order); the first statement that fails alone holds the error, and within it the token the message
names (``unexpected token `}` ``) is found by re-parsing cut-down copies of the statement.

The same lexer guards the engine (:func:`limit_errors`). Cedar's parser and its conversions recurse
once per nesting level, on the calling thread's stack, and a stack overflow in Rust is not an
exception: it kills the process. Measured with cedarpy 4.12 on an 8 MiB stack (a thread with a 2 MiB
stack fails at a quarter of these), in the call that dies first:

======================================  ===================================  ==================
shape                                    call                                 dies at
======================================  ===================================  ==================
nested ``(``, ``[`` or ``{`` (also in    ``PolicySet.from_str`` (any parse)   ~660 levels
a Cedar schema)                                                               (~12.7 KB/level)
``true && true && …``                    ``PolicySet.to_pst`` (scope index)   ~1,340 terms
``if … then if … then …``                ``PolicySet.to_pst``                 < 4,000 levels
any deep expression                      ``policies_to_json_str``             ~16,300 levels
======================================  ===================================  ==================

Evaluation and schema validation held at every depth tried (200,000-term chains). Below the
crash, ``to_pst`` refuses expressions nested past 100 levels with a ``ValueError``.

So before any engine call, every policy is measured here: its bracket nesting (at most
``policy_max_nesting_depth``, 32 by default) and the operators on its deepest expression path
(at most ``policy_max_expression_size``, 400 by default). The second is an upper bound of the
depth of the expression tree the engine builds — every tree node above a leaf is an operator, a
``.``, or a bracket in the text, and a left-associative chain nests once per operator — and it
ignores width: a 5,000-member set literal counts one. Counting costs one regex pass (~20 ms for
1,000 policies, ~0.2 s for 10,000, against ~1 s and ~10 s for the compile itself); compiling in a
child process first was measured as the alternative and not chosen (README.md says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshauth.policy.cedar import PolicySet

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*)
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


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        out.append(Token(m.start(), m.end(), m.group()))
    return out


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


DEFAULT_MAX_NESTING = 32
DEFAULT_MAX_EXPRESSION = 400
NESTING_SETTING = "policy_max_nesting_depth"
EXPRESSION_SETTING = "policy_max_expression_size"


@dataclass(frozen=True, slots=True)
class Limits:
    """What a policy may hold before the engine is given it (settings, see ``config.py``)."""

    max_nesting: int = DEFAULT_MAX_NESTING  # brackets open at once within one policy
    max_expression: int = DEFAULT_MAX_EXPRESSION  # operators on a policy's deepest expression path


_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")
# Every expression node above a leaf is one of these in the text (a bracket also counts: ``f(x)``,
# ``a[i]``, ``[set]`` and ``{record}`` are nodes; a grouping ``(x)`` is counted though it is not).
_OPERATORS = frozenset(
    ("&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "!", ".", "in", "has", "like", "is", "if")
)
# ``@id("x")`` among the annotations a statement opens with (other annotations may come first).
_ID_ANNOTATION = re.compile(r'(?:@\w+\s*(?:\(\s*"(?:[^"\\]|\\.)*"\s*\))?\s*)*?@id\s*\(\s*"((?:[^"\\]|\\.)*)"')


def id_at(text: str, offset: int) -> str | None:
    """The ``@id("…")`` of the statement starting at ``offset``, when it opens with one."""
    m = _ID_ANNOTATION.match(text, offset)
    return m.group(1) if m else None


def _too_deep(depth: int, limit: int) -> str:
    return f"brackets nest {depth} deep here; the limit is {limit} ({NESTING_SETTING})"


def limit_errors(text: str, limits: Limits) -> list[SourceError]:
    """Every policy of ``text`` that is over a limit, once each (the first limit it passes).

    Pure Python over the lexer (no engine call, no recursion), so it is safe on any input: this
    is what stands between an upload and a parser that would overflow its stack. Statements are
    split at ``;`` as :func:`statements` does, so ``policy_id`` is Cedar's positional id.
    """
    return [] if _within(text, limits) else _located(text, limits)


def _located(text: str, limits: Limits) -> list[SourceError]:
    """:func:`limit_errors` over the full lexer, which keeps offsets."""
    errors: list[SourceError] = []
    index = 0
    start: int | None = None  # offset of the current statement's first token; None between statements
    # One entry per open group, the statement itself first, then each open bracket:
    # [operators directly in it, largest size of a group closed inside it]; a group's size is the sum.
    stack: list[list[int]] = [[0, 0]]
    failed = False  # the current statement was reported: skip to its end

    def fail(offset: int, message: str) -> None:
        nonlocal failed
        assert start is not None
        errors.append(SourceError(message, location(text, offset), f"policy{index}", id_at(text, start)))
        failed = True

    def end_statement() -> None:
        while len(stack) > 1:  # brackets left open are a syntax error the parser reports; measure anyway
            _close(stack)
        size = sum(stack[0])
        if size > limits.max_expression:
            fail(start or 0, _too_large(size, limits.max_expression))

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "ws" or kind == "comment":
            continue
        tok = m.group()
        if start is None:
            start = m.start()
        if tok == ";":
            if not failed:
                end_statement()
            index += 1
            start = None
            stack = [[0, 0]]
            failed = False
        elif failed:
            continue
        elif tok in _OPEN:
            stack[-1][0] += 1
            stack.append([0, 0])
            if len(stack) - 1 > limits.max_nesting:
                fail(m.start(), _too_deep(len(stack) - 1, limits.max_nesting))
        elif tok in _CLOSE:
            if len(stack) > 1:  # an unmatched closer is a syntax error the parser reports
                _close(stack)
        elif tok in _OPERATORS:
            stack[-1][0] += 1
            # Checked as it grows, so a 100,000-term chain is refused at its 401st operator.
            if stack[-1][0] > limits.max_expression:
                fail(start, _too_large(stack[-1][0], limits.max_expression))
    if start is not None and not failed:  # a last statement without ``;`` (a syntax error, later)
        end_statement()
    return errors


# What the guard looks at, as group 1 (brackets, operators, ``;``, keyword operators); strings,
# comments and other words match as a whole with an empty group 1, so ``"(("`` and ``index`` are
# skipped. ``findall`` over it is ~4x faster than walking the full lexer (which keeps offsets).
_GUARDED = re.compile(
    r"""
    "(?:[^"\\]|\\.)*"?
  | //[^\n]*
  | ((?:in|has|like|is|if)\b|&&|\|\||[=!<>]=|[^\sA-Za-z0-9_"])
  | [A-Za-z_][A-Za-z0-9_]*
  | \d+
    """,
    re.VERBOSE,
)


def _within(text: str, limits: Limits) -> bool:
    """Whether every statement is within ``limits``: :func:`limit_errors`' measure without the
    locations, for the common case (it then only runs again, slower, to say where)."""
    stack: list[list[int]] = [[0, 0]]
    for tok in _GUARDED.findall(text):
        if not tok:
            continue
        if tok == ";":
            while len(stack) > 1:
                _close(stack)
            if sum(stack[0]) > limits.max_expression:
                return False
            stack = [[0, 0]]
        elif tok in _OPEN:
            stack[-1][0] += 1
            stack.append([0, 0])
            if len(stack) - 1 > limits.max_nesting:
                return False
        elif tok in _CLOSE:
            if len(stack) > 1:
                _close(stack)
        elif tok in _OPERATORS:
            stack[-1][0] += 1
            if stack[-1][0] > limits.max_expression:
                return False
    while len(stack) > 1:
        _close(stack)
    return sum(stack[0]) <= limits.max_expression


def _close(stack: list[list[int]]) -> None:
    own, child = stack.pop()
    stack[-1][1] = max(stack[-1][1], own + child)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the expression is too large: at least {size} operators on its deepest path; "
        f"the limit is {limit} ({EXPRESSION_SETTING})"
    )


def nesting_errors(text: str, limit: int) -> list[SourceError]:
    """Where brackets in ``text`` (a Cedar schema) first nest deeper than ``limit``, if they do."""
    depth = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in _OPEN:
            depth += 1
            if depth > limit:
                return [SourceError(_too_deep(depth, limit), location(text, m.start()))]
        elif tok in _CLOSE:
            depth = max(depth - 1, 0)
    return []


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
