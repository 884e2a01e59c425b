"""Whether a policy text can be served: the limits first (no engine call), then the worker's own
compile. The same check runs before an upload or activation writes anything and when a worker loads
a store, so what was accepted can be served by every worker, and what an older release stored that
cannot be served makes its store fail closed instead of taking the worker down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from meshauth.policy.cedar import parse_policies
from meshauth.policy.schema_depth import SchemaTooDeep, schema_depth
from meshauth.policy.source import Location, SourceError, id_at, location, statements, syntax_errors
from meshauth.policy.source_limits import Limits, limit_errors, nesting_errors

_T = TypeVar("_T")
LOCATE_MAX_STATEMENTS = 1000  # compiling statements one by one to find the culprit: bounded effort


class Unservable(Exception):
    """The text is over a limit (``policy_too_complex``) or the engine refused to compile it for
    serving (``invalid_policy``). ``errors`` locate the policies, as the upload's 422 lists them."""

    def __init__(self, error: str, errors: list[SourceError]) -> None:
        first = errors[0]
        where = f"{first.policy_id} " if first.policy_id else ""
        super().__init__(f"{where}(line {first.location.line}, column {first.location.column}): {first.message}")
        self.error = error
        self.errors = errors


def check_schema_text(text: str | None, fmt: str | None, limits: Limits) -> None:
    """A Cedar-format schema nested past the limit overflows the schema parser's stack (a JSON schema
    is refused by its JSON reader's own depth limit of 128, with an error); and any schema whose types
    nest past the limit once common types are resolved overflows the value parser (``schema_depth``)."""
    if text and fmt != "json":
        errors = nesting_errors(text, limits.max_nesting)
        if errors:
            raise Unservable("policy_too_complex", errors)
    if text:
        # Typed values are parsed recursively against the schema: a type nested deeper than the
        # limit once common types are resolved would let one decision request crash the worker.
        try:
            depth = schema_depth(text, fmt)
        except SchemaTooDeep as exc:
            raise Unservable("policy_too_complex", [SourceError(str(exc), Location(1, 1, 0))]) from None
        if depth > limits.max_nesting:
            message = (
                f"the schema's types nest {depth} deep once common types are resolved; "
                f"the limit is {limits.max_nesting} (policy_max_nesting_depth)"
            )
            raise Unservable("policy_too_complex", [SourceError(message, Location(1, 1, 0))])


def checked(compile_text: Callable[[str], _T], text: str, limits: Limits) -> _T:
    """``compile_text(text)`` (run it on ``cedar.compile_thread``), once ``text`` is within
    ``limits``. Raises :class:`Unservable`, never a crash for text within the limits."""
    over = limit_errors(text, limits)
    if over:
        raise Unservable("policy_too_complex", over)
    try:
        return compile_text(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply to analyse" if isinstance(exc, RecursionError) else str(exc)
    try:
        parse_policies(text)
    except ValueError as exc:  # a syntax error: located as the upload check locates it
        raise Unservable("invalid_policy", syntax_errors(text, str(exc))) from None
    raise Unservable("invalid_policy", [_culprit(compile_text, text, reason)])


def _culprit(compile_text: Callable[[str], object], text: str, reason: str) -> SourceError:
    """The first policy that fails to compile alone, else the whole text (the failure is in how they
    combine)."""
    message = f"cannot be compiled for serving: {reason}"
    for index, stmt in enumerate(statements(text)[:LOCATE_MAX_STATEMENTS]):
        try:
            compile_text(text[stmt.start : stmt.end])
        except (ValueError, RecursionError):
            return SourceError(message, location(text, stmt.start), f"policy{index}", id_at(text, stmt.start))
    return SourceError(message, Location(1, 1, 0))
