"""The upload limits on Cedar policy text, checked before any engine call.

The lexer of ``source.py`` guards the engine (:func:`limit_errors`). Cedar's parser and its conversions recurse
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

from meshauth.policy.source import SourceError, id_at, iter_tokens, location

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

    for token in iter_tokens(text):
        tok = token.text
        if start is None:
            start = token.start
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
                fail(token.start, _too_deep(len(stack) - 1, limits.max_nesting))
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
  | //[^\n\r]*
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
    for token in iter_tokens(text):  # strings and comments are single tokens: no bracket inside counts
        tok = token.text
        if tok in _OPEN:
            depth += 1
            if depth > limit:
                return [SourceError(_too_deep(depth, limit), location(text, token.start))]
        elif tok in _CLOSE:
            depth = max(depth - 1, 0)
    return []
