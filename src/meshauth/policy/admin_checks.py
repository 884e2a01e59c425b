"""What a policy text must pass to be written: syntax, and types under the store's schema (422s
with locations). Split from ``admin.py``."""

from __future__ import annotations

from meshauth.policy import cedar, stores
from meshauth.policy.errors import invalid_policy
from meshauth.policy.source import Location, SourceError, statement_location, syntax_errors

__all__ = ["check_policies", "schema_of", "validate"]


def check_policies(text: str, schema: cedar.Schema | None) -> None:
    """Raise a 422 listing every syntax or type error in ``text`` with its location, and every
    template: meshauth has no API to link one, and an unlinked template applies to nothing (a
    ``forbid`` template was stored and forbade nothing)."""
    try:
        parsed = cedar.parse_policies(text)
    except ValueError as exc:
        raise invalid_policy(syntax_errors(text, str(exc))) from None
    templates = parsed.templates()
    if templates:
        raise invalid_policy([_template_error(text, t) for t in templates])
    clashes = _name_clashes(text)
    if clashes:
        raise invalid_policy(clashes)
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


def _name_clashes(text: str) -> list[SourceError]:
    """Policies two of which would be named alike: decisions and the audit trail name a policy by its
    ``@id``, else by its position (``policy3``), so a repeated ``@id``, or an ``@id`` that is another
    unannotated policy's positional name, made a decision's ``policies`` ambiguous."""
    annotations = cedar.id_annotations(text)
    if not annotations:
        return []
    groups: dict[str, list[str]] = {}  # the name a decision gives → the policies answering to it
    for pid in cedar.policy_ids(text):
        groups.setdefault(annotations.get(pid, pid), []).append(pid)
    errors = []
    for name, pids in groups.items():
        if len(pids) < 2:
            continue
        annotated = [p for p in pids if p in annotations]
        # Against an unannotated policy's own name every @id taking it is at fault; among @ids alone,
        # every one after the first.
        for pid in annotated if len(annotated) < len(pids) else annotated[1:]:
            others = ", ".join(p for p in pids if p != pid)
            message = f"@id({name!r}) names another policy as well ({others}): decisions could not tell them apart"
            errors.append(SourceError(message, statement_location(text, pid) or Location(1, 1, 0), pid, name))
    return errors


def _template_error(text: str, template: dict[str, object]) -> SourceError:
    policy_id = str(template["id"])
    annotation = template.get("id_annotation")
    raw = template.get("slots")
    slots = ", ".join(map(str, raw)) if isinstance(raw, list) else "?"
    message = (
        f"a template (slots {slots}): meshauth does not link templates, so it would apply to nothing; "
        "name the entities in the policy instead"
    )
    loc = statement_location(text, policy_id) or Location(1, 1, 0)
    return SourceError(message, loc, policy_id, str(annotation) if annotation is not None else None)


def schema_of(row: stores.StoreRow) -> cedar.Schema | None:
    if not row.schema_text:
        return None
    return cedar.parse_schema(row.schema_text, row.schema_format or "cedar")


def validate(row: stores.StoreRow, text: str) -> None:
    """Syntax and types, as 422s with locations. Only for text already within the limits."""
    check_policies(text, schema_of(row))
