"""The AuthZEN 1.0 wire types both services share (the auth service asks, the policy service answers).

Only shapes live here: no I/O, no service code. ``encode``/``decode_*`` are the one place that turns
them into bytes and back, so both sides agree byte for byte.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Action",
    "Decision",
    "DecisionContext",
    "EvaluationItem",
    "EvaluationRequest",
    "EvaluationsOptions",
    "EvaluationsRequest",
    "EvaluationsResponse",
    "ItemError",
    "Resource",
    "Semantic",
    "Subject",
    "decode_decision",
    "decode_evaluations_response",
    "encode",
]

Semantic = Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"]


class Subject(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    type: str
    id: str
    properties: dict[str, Any] | None = None


class Resource(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    type: str
    id: str
    properties: dict[str, Any] | None = None


class Action(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    name: str
    properties: dict[str, Any] | None = None


class EvaluationRequest(msgspec.Struct, omit_defaults=True):
    subject: Subject
    action: Action
    resource: Resource
    context: dict[str, Any] | None = None


class EvaluationItem(msgspec.Struct, omit_defaults=True):
    """One item of an ``evaluations`` batch: a field left out comes from the batch's defaults."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None


# A policy version number: what the database can hold (never a huge integer turned into a float).
StagedVersion = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class EvaluationsOptions(msgspec.Struct, omit_defaults=True):
    evaluations_semantic: Semantic = "execute_all"
    # meshauth's own option, sent only by ``meshauth.client``'s warmer: evaluate against this
    # uploaded (staged, not active) version of the store instead of the active one. The answers then
    # say so (``DecisionContext.staged_version``/``staged_on``, and ``revision`` -1).
    meshauth_staged_version: StagedVersion | None = None


class EvaluationsRequest(msgspec.Struct, omit_defaults=True):
    """Top-level ``subject``/``action``/``resource``/``context`` are defaults for every item."""

    evaluations: list[EvaluationItem] | None = None
    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None
    options: EvaluationsOptions | None = None


class ItemError(msgspec.Struct):
    """Why one item of a batch could not be evaluated (AuthZEN's per-evaluation error)."""

    status: int
    message: str


class DecisionContext(msgspec.Struct):
    """Why: the store revision decided at, the policies that determined it, evaluation errors."""

    revision: int
    policies: list[str] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)
    # Present only on an item that could not be evaluated at all.
    error: ItemError | msgspec.UnsetType = msgspec.UNSET
    # The store's entity version decided at, when the service reports it (clients key caches by it).
    entities_version: int | msgspec.UnsetType = msgspec.UNSET
    # Only in an answer to a staged evaluation (``EvaluationsOptions.meshauth_staged_version``): the
    # version evaluated, and the revision whose schema, attribute precedence and entities it was
    # evaluated with. ``revision`` is then -1: a staged answer names no state that is or was active.
    staged_version: int | msgspec.UnsetType = msgspec.UNSET
    staged_on: int | msgspec.UnsetType = msgspec.UNSET


class Decision(msgspec.Struct):
    decision: bool
    context: DecisionContext


class EvaluationsResponse(msgspec.Struct):
    evaluations: list[Decision]


_encoder = msgspec.json.Encoder()
_decision_decoder = msgspec.json.Decoder(Decision)
_evaluations_decoder = msgspec.json.Decoder(EvaluationsResponse)


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def decode_decision(raw: bytes) -> Decision:
    return _decision_decoder.decode(raw)


def decode_evaluations_response(raw: bytes) -> EvaluationsResponse:
    return _evaluations_decoder.decode(raw)
