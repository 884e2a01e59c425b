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

from collections import Counter

import msgspec

from meshauth import wire
from meshauth.client._metrics import CHECKS
from meshauth.client._models import REASON_INVALID_REQUEST, STATE_MAX, Decision
from meshauth.client._transport import Response

__all__ = ["Refused", "Unavailable", "WholeRefused", "count_checks", "invalid", "item_decision", "outcome", "parse"]

_REFUSED = "the service refused the request"


class Unavailable(Exception):
    """No decision could be had from the service (the reason is the message)."""


class Refused(Exception):
    """The service answered, deliberately, with a refusal that is not about one item."""


class WholeRefused(Exception):
    """The service refused a call of several checks as malformed (400/413/422), naming none of them."""


def item_decision(d: wire.Decision) -> Decision:
    ctx = d.context
    ev = None if isinstance(ctx.entities_version, msgspec.UnsetType) else ctx.entities_version
    if not (0 <= ctx.revision <= STATE_MAX and (ev is None or 0 <= ev <= STATE_MAX)):
        # No store has that state (``STATE_MAX``): a garbage answer, never one to learn a state from.
        raise Unavailable("the service answered a revision or entities version no store can have")
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


class _RawItems(msgspec.Struct):
    evaluations: list[msgspec.Raw]


_decode_items = msgspec.json.Decoder(_RawItems).decode
# Decisions by the exact bytes of their item: most items of a batch's answer are alike (same
# decision, reasons and state), and a Decision is immutable, so alike items share one, decoded and
# built once: 0.31 instead of 0.63 µs per item (bench/adhoc/issue10-batch2/answers_micro.py).
_ALIKE: dict[bytes, Decision] = {}
_ALIKE_MAX = 1024


def _alike(raw: bytes) -> Decision:
    found = _ALIKE.get(raw)
    if found is None:
        found = item_decision(wire.decode_decision(raw))
        if len(_ALIKE) >= _ALIKE_MAX:
            _ALIKE.clear()  # items that are all different (errors naming entities): never unbounded
        _ALIKE[raw] = found
    return found


def outcome(d: Decision) -> str:
    """The ``outcome`` label of a check's answer (metrics)."""
    if d.error:
        return "invalid" if d.error == REASON_INVALID_REQUEST else "unavailable"
    return "allow" if d.decision else "deny"


def count_checks(answers: list[Decision]) -> None:
    """``CHECKS`` for a batch's answers, counted per distinct answer object (alike answers are one
    object: ``_alike``) in C, then per label."""
    by_id = dict(zip(map(id, answers), answers, strict=True))
    counts: dict[tuple[str, str], int] = {}
    for ident, n in Counter(map(id, answers)).items():
        d = by_id[ident]
        label = (outcome(d), d.source)
        counts[label] = counts.get(label, 0) + n
    for (verdict, source), n in counts.items():
        CHECKS.add_many(n, verdict, source)


def invalid(detail: str) -> Decision:
    """The answer to a malformed check: a deny with :data:`REASON_INVALID_REQUEST` saying why."""
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
        items = _decode_items(resp.body).evaluations
        if len(items) != count:
            raise Unavailable(f"the service answered {len(items)} decisions for {count} checks")
        return [_alike(bytes(raw)) for raw in items]
    if status in (400, 413, 422):
        if count > 1:  # about which check? The caller asks again in parts (``_call.Caller``).
            raise WholeRefused(_error_text(resp.body))
        return [invalid(_error_text(resp.body))]
    if 400 <= status < 500 and status != 429:
        raise Refused(f"the service refused the call ({status}: {_error_text(resp.body)})")
    raise Unavailable(f"the service answered {status}")
