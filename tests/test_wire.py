"""The AuthZEN wire types both services share."""

from __future__ import annotations

import msgspec
import pytest

from meshauth import wire

PUBLIC = [
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


def test_public_names() -> None:
    """The module exports exactly these names, pinned here as httpx pins its own: a change to the
    public surface is a change to this list, made on purpose."""
    assert wire.__all__ == PUBLIC
    assert all(hasattr(wire, name) for name in wire.__all__)


def test_every_public_looking_name_is_exported() -> None:
    """Nothing defined in the module without a leading underscore is left out of ``__all__``."""
    defined = {
        name
        for name, value in vars(wire).items()
        if not name.startswith("_") and getattr(value, "__module__", wire.__name__) == wire.__name__
    }
    assert defined - {"annotations", "Any", "Literal", "msgspec"} <= set(wire.__all__)


def test_decision_round_trip() -> None:
    """A decision encodes to the documented shape and decodes back equal."""
    d = wire.Decision(True, wire.DecisionContext(revision=3, policies=["p"], errors=[]))
    raw = wire.encode(d)
    assert msgspec.json.decode(raw) == {"decision": True, "context": {"revision": 3, "policies": ["p"], "errors": []}}
    assert wire.decode_decision(raw) == d


def test_item_error_only_when_set() -> None:
    """``context.error`` appears only on an item that could not be evaluated."""
    err = wire.ItemError(400, "subject.id: is required")
    d = wire.Decision(False, wire.DecisionContext(revision=1, errors=[err.message], error=err))
    assert msgspec.json.decode(wire.encode(d))["context"]["error"] == {"status": 400, "message": err.message}


def test_evaluations_response_round_trip() -> None:
    """A batch response decodes into decisions in order."""
    raw = b'{"evaluations":[{"decision":true,"context":{"revision":1,"policies":[],"errors":[]}}]}'
    assert wire.decode_evaluations_response(raw).evaluations[0].decision is True


def test_request_requires_subject_action_resource() -> None:
    """An evaluation request without an action does not decode."""
    with pytest.raises(msgspec.ValidationError, match="action"):
        msgspec.json.decode(
            b'{"subject":{"type":"U","id":"a"},"resource":{"type":"R","id":"r"}}', type=wire.EvaluationRequest
        )
