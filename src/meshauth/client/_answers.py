"""What the service's answers mean: a response (status and body) becomes decisions, or one of the two
failures the call path tells apart.

- :class:`Unavailable` — no decision could be had (5xx/429, garbage, wrong number of answers, an
  answer from an older state than one already seen): a breaker failure, worth a retry elsewhere;
- :class:`Refused` — the service deliberately refused the whole request (401, 404 …): not a sign
  of ill health, so neither a breaker failure nor worth a retry.

A 400/413/422 is neither: the question is malformed, and every check in it is answered as such (a
deny with :data:`REASON_INVALID_REQUEST`). Neither exception leaves the client: a check turns them
into a deny.
"""

from __future__ import annotations

import msgspec

from meshauth import wire
from meshauth.client._models import REASON_INVALID_REQUEST, Decision
from meshauth.client._transport import Response

__all__ = ["Refused", "Unavailable", "item_decision", "outcome", "parse"]

_REFUSED = "the service refused the request"


class Unavailable(Exception):
    """No decision could be had from the service (the reason is the message)."""


class Refused(Exception):
    """The service answered, deliberately, with a refusal that is not about one item."""


def item_decision(d: wire.Decision) -> Decision:
    ctx = d.context
    ev = None if isinstance(ctx.entities_version, msgspec.UnsetType) else ctx.entities_version
    if not isinstance(ctx.error, msgspec.UnsetType):
        # The service could not evaluate this item: the question was bad. Deny, whatever it said.
        errors = tuple(ctx.errors) or (ctx.error.message,)
        return Decision(
            decision=False,
            reasons=(REASON_INVALID_REQUEST,),
            errors=errors,
            revision=ctx.revision,
            entities_version=ev,
            error=REASON_INVALID_REQUEST,
        )
    return Decision(
        decision=d.decision,
        reasons=tuple(ctx.policies),
        errors=tuple(ctx.errors),
        revision=ctx.revision,
        entities_version=ev,
    )


def outcome(d: Decision) -> str:
    """The ``outcome`` label of a check's answer (metrics)."""
    if d.error:
        return "invalid" if d.error == REASON_INVALID_REQUEST else "unavailable"
    return "allow" if d.decision else "deny"


def _invalid(detail: str) -> Decision:
    return Decision(decision=False, reasons=(REASON_INVALID_REQUEST,), errors=(detail,), error=REASON_INVALID_REQUEST)


def _error_text(body: bytes) -> str:
    try:
        doc = msgspec.json.decode(body[:4096])
    except msgspec.DecodeError:
        return _REFUSED
    if isinstance(doc, dict):
        return str(doc.get("error_description") or doc.get("error") or _REFUSED)[:512]
    return _REFUSED


def parse(endpoint: str, resp: Response, count: int) -> list[Decision]:
    """The ``count`` decisions in a response to ``endpoint`` (``evaluation`` or ``evaluations``),
    or raises :class:`Unavailable` / :class:`Refused` (a decoding error is an ``Unavailable`` too,
    by way of the caller: any other exception is a sick answer)."""
    status = resp.status
    if status == 200:
        if endpoint == "evaluation":
            return [item_decision(wire.decode_decision(resp.body))]
        decisions = wire.decode_evaluations_response(resp.body).evaluations
        if len(decisions) != count:
            raise Unavailable(f"the service answered {len(decisions)} decisions for {count} checks")
        return [item_decision(d) for d in decisions]
    if status in (400, 413, 422):
        # The question is malformed: every check in the request gets that answer (a deny).
        return [_invalid(_error_text(resp.body))] * count
    if 400 <= status < 500 and status != 429:
        raise Refused(f"the service refused the call ({status}: {_error_text(resp.body)})")
    raise Unavailable(f"the service answered {status}")
