"""What a policy text must pass to be written: syntax, and types under the store's schema (422s
with locations). Split from ``admin.py``."""

from __future__ import annotations

from meshauth.policy import cedar, stores
from meshauth.policy.errors import invalid_policy
from meshauth.policy.source import Location, SourceError, statement_location, syntax_errors

__all__ = ["check_policies", "schema_of", "validate"]


def check_policies(text: str, schema: cedar.Schema | None) -> None:
    """Raise a 422 listing every syntax or type error in ``text`` with its location."""
    try:
        cedar.parse_policies(text)
    except ValueError as exc:
        raise invalid_policy(syntax_errors(text, str(exc))) from None
    if schema is None:
        return
    issues = cedar.validate(text, schema)
    if not issues:
        return
    annotations = cedar.id_annotations(text)
    errors = []
    for issue in issues:
        loc = statement_location(text, issue.policy_id) if issue.policy_id else None
        errors.append(
            SourceError(
                issue.error,
                loc or Location(1, 1, 0),
                issue.policy_id or None,
                annotations.get(issue.policy_id),
            )
        )
    raise invalid_policy(errors)


def schema_of(row: stores.StoreRow) -> cedar.Schema | None:
    if not row.schema_text:
        return None
    return cedar.parse_schema(row.schema_text, row.schema_format or "cedar")


def validate(row: stores.StoreRow, text: str) -> None:
    """Syntax and types, as 422s with locations. Only for text already within the limits."""
    check_policies(text, schema_of(row))
