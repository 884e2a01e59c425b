"""The policy service's client errors, all rendered by :class:`meshauth.http.ApiError`.

Shapes: ``{"error": …, "error_description": …}``; invalid Cedar (422) adds ``"errors": [{"message",
"policy_id", "id", "line", "column", "offset"}]``.

A store whose active version cannot be served answers 503 ``store_unavailable`` for every
decision: no decision is made (clients deny), and the description says why and what fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshauth.http import ApiError
from meshauth.policy.source import SourceError


def bad_request(field: str, message: str) -> ApiError:
    """400 naming the offending field (``subject.id``, ``evaluations[3].action``, ``entities[0].uid``)."""
    return ApiError(400, "invalid_request", f"{field}: {message}", extra={"field": field})


def not_json(exc: Exception) -> ApiError:
    """A body msgspec could not decode: malformed (``DecodeError``) or nested past the recursion
    limit (``RecursionError``, which msgspec raises instead of a ``DecodeError``)."""
    reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    return bad_request("body", f"not valid JSON: {reason}")


def store_not_found(store: str) -> ApiError:
    return ApiError(404, "store_not_found", f"no policy store named {store!r}")


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", what)


def invalid_policy(errors: Sequence[SourceError], *, error: str = "invalid_policy") -> ApiError:
    first = errors[0]
    where = f"line {first.location.line}, column {first.location.column}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiError(
        422,
        error,
        f"{where}: {first.message}{more}",
        extra={"errors": [e.as_json() for e in errors]},
    )


def store_unavailable(store: str, version: int | None, problem: str) -> ApiError:
    return ApiError(
        503,
        "store_unavailable",
        f"store {store!r} cannot be served: its active version {version} is refused: {problem}; "
        "activate a version that can be served",
    )


def invalid_schema(message: str) -> ApiError:
    return ApiError(422, "invalid_schema", message)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "invalid_token",
        "the admin API needs the admin bearer token",
        headers={"www-authenticate": 'Bearer realm="meshauth-policy"'},
    )
