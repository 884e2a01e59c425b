"""AuthZEN 1.0 → Cedar: turn request bodies into :class:`Query` objects, with precise 400s.

- ``subject``/``resource``: ``type`` → entity type (``App::User`` allowed), ``id`` → entity id,
  ``properties`` → attributes merged over the stored entity's;
- ``action.name`` → ``Action::"name"``, or used as is when already a Cedar uid
  (``App::Action::"view"``);
- ``context`` → the Cedar context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from meshauth import wire
from meshauth.http import ApiError, utf8_problem
from meshauth.nesting import shape
from meshauth.policy.cedar import Uid
from meshauth.policy.errors import bad_request, not_json
from meshauth.policy.names import action_uid, check_uid, is_valid_uid

_canonical = msgspec.json.Encoder(order="deterministic")
_plain = msgspec.json.Encoder()
DEFAULT_MAX_BYTES = 1_048_576  # ``policy_max_request_bytes``'s default: the service passes its own
DEFAULT_MAX_VALUES = 65_536  # ``policy_max_request_values``'s default, likewise
_MSGSPEC_PATH = re.compile(r" - at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]*)`")
_ITEM_KEYS = ("subject", "action", "resource", "context")
# How deep a request's ``context`` and ``properties`` may nest (``{}`` is one level), as account
# attributes may (auth.accounts); what they may weigh is ``policy_max_request_values`` (``_check_weight``).
MAX_VALUE_DEPTH = 16
_TOO_DEEP = f"must nest at most {MAX_VALUE_DEPTH} levels deep (an object or array is one level)"


class _TooDeep(Exception):
    """A value of the request nests past ``MAX_VALUE_DEPTH``; ``field`` names it."""

    def __init__(self, field: str) -> None:
        self.field = field


class Query(msgspec.Struct, frozen=True, gc=False):
    """One Cedar request, validated. ``key`` identifies equal requests (to de-duplicate a batch): the
    three uids, or, with a context or properties, a canonical encoding of everything.

    A ``msgspec.Struct`` rather than a frozen dataclass: one is built per decision, and a frozen
    dataclass sets each field through ``object.__setattr__`` (measured ~2 % of a batch's time).
    ``gc=False``: it holds only strings, tuples and JSON values, never a cycle."""

    principal: Uid
    action: Uid
    resource: Uid
    context: dict[str, Any] | None
    principal_attrs: dict[str, Any] | None
    resource_attrs: dict[str, Any] | None
    key: Hashable
    weight: int = 0  # of ``context`` and the properties: each value once per level it sits at (``nesting.shape``)


def to_query(req: wire.EvaluationRequest, field: str = "") -> Query:
    """Map one decoded request; raises a 400 naming ``field``-prefixed paths."""
    return query_of(req.subject, req.action, req.resource, req.context, field)


def query_of(
    subject: wire.Subject,
    action: wire.Action,
    resource: wire.Resource,
    context: dict[str, Any] | None,
    field: str = "",
) -> Query:
    query = plain_query(subject, action, resource, context)
    if query is not None:
        return query
    prefix = f"{field}." if field else ""
    principal = check_uid(f"{prefix}subject", subject.type, subject.id)
    resource_uid = check_uid(f"{prefix}resource", resource.type, resource.id)
    action_id = action_uid(f"{prefix}action.name", action.name)
    try:
        if principal == resource_uid and subject.properties and resource.properties:
            _check_agree(subject.properties, resource.properties, f"{prefix}resource.properties")
        return _query(principal, action_id, resource_uid, context, subject.properties, resource.properties)
    except _TooDeep as exc:
        raise bad_request(f"{prefix}{exc.field}", _TOO_DEEP) from None


def _check_agree(pattrs: dict[str, Any], rattrs: dict[str, Any], field: str) -> None:
    """Subject and resource are one entity (a user reading their own profile), so both ``properties``
    describe it: what one says the other must not contradict (which to believe is no guess to make)."""
    for name in pattrs.keys() & rattrs.keys():
        if _canonical.encode(pattrs[name]) != _canonical.encode(rattrs[name]):
            raise bad_request(field, f"the resource is the subject, and {name!r} differs from subject.properties")


def plain_action(action: wire.Action) -> bool:
    """Whether the action is a valid bare name (no Cedar uid to unescape)."""
    name = action.name
    return is_valid_uid("Action", name) and not (name.endswith('"') and '::"' in name)


def plain_query(
    subject: wire.Subject,
    action: wire.Action,
    resource: wire.Resource,
    context: dict[str, Any] | None,
    action_ok: bool | None = None,
) -> Query | None:
    """The query when every uid is valid and the action a bare name (``action_ok``: already known,
    as for a batch's default action); else None, and ``query_of`` checks field by field to say what
    is wrong. This runs once per decision, so it builds no field names for messages it will not need."""
    name = action.name
    if not (
        is_valid_uid(subject.type, subject.id)
        and is_valid_uid(resource.type, resource.id)
        and (plain_action(action) if action_ok is None else action_ok)
    ):
        return None
    if subject.properties and resource.properties and subject.id == resource.id and subject.type == resource.type:
        return None  # one entity described twice: ``query_of`` checks that the descriptions agree
    uids = (subject.type, subject.id), ("Action", name), (resource.type, resource.id)
    try:
        return _query(*uids, context, subject.properties, resource.properties)
    except _TooDeep:
        return None  # ``query_of`` names the field


def _query(
    principal: Uid,
    action_id: Uid,
    resource_uid: Uid,
    context: dict[str, Any] | None,
    pattrs: dict[str, Any] | None,
    rattrs: dict[str, Any] | None,
) -> Query:
    context = context or None
    pattrs = pattrs or None
    rattrs = rattrs or None
    weight = 0
    if context is None and pattrs is None and rattrs is None:
        key: Hashable = (principal, action_id, resource_uid)  # the common case: no encoding needed
    else:
        # Each value weighed on its own line (not a loop over (field, value) pairs): this runs for every
        # decision with a context, and the loop's tuples cost as much as the weighing.
        if context is not None:
            depth, weight = shape(context)
            if depth > MAX_VALUE_DEPTH:
                raise _TooDeep("context")
        if pattrs is not None:
            depth, more = shape(pattrs)
            if depth > MAX_VALUE_DEPTH:
                raise _TooDeep("subject.properties")
            weight += more
        if rattrs is not None:
            depth, more = shape(rattrs)
            if depth > MAX_VALUE_DEPTH:
                raise _TooDeep("resource.properties")
            weight += more
        if principal == resource_uid and (pattrs is not None or rattrs is not None):
            # One entity: the evaluator overrides it once, by uid, so each side carries both
            # descriptions (else the resource's would silently replace the subject's: a dropped
            # ``suspended: true`` is an allow that should be a deny).
            pattrs = rattrs = {**(pattrs or {}), **(rattrs or {})}
        key = _canonical.encode((principal, action_id, resource_uid, context, pattrs, rattrs))
    return Query(principal, action_id, resource_uid, context, pattrs, rattrs, key, weight)


def _field_of(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    text = str(exc)
    m = _MSGSPEC_PATH.search(text)
    path = m.group(1) if m else ""
    message = _MSGSPEC_PATH.sub("", text)
    missing = _MISSING.search(message)
    if missing:
        path = ".".join(p for p in (path, missing.group(1)) if p)
        message = "is required"
    field = ".".join(p for p in (prefix, path) if p) or "body"
    return field, message


_decode_single = msgspec.json.Decoder(wire.EvaluationRequest)


def _check_utf8(body: bytes) -> None:
    """msgspec raises ``UnicodeDecodeError`` (not a ``DecodeError``) for bad bytes in a string it
    decodes, and skips unknown fields' strings unchecked: check the whole body first, one way."""
    problem = utf8_problem(body)
    if problem is not None:
        raise bad_request("body", f"not valid JSON: {problem}")


def parse_evaluation(body: bytes, *, max_values: int = DEFAULT_MAX_VALUES) -> Query:
    """``POST …/evaluation`` body → query, or a 400 naming the field (a 413 past ``max_values``)."""
    _check_utf8(body)
    try:
        req = _decode_single.decode(body)
    except msgspec.ValidationError as exc:
        field, message = _field_of(exc, "")
        raise bad_request(field, message) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise not_json(exc) from None
    query = to_query(req)
    _check_weight(query.weight, max_values)
    return query


def _check_weight(weight: int, max_values: int) -> None:
    """413 when the request's contexts and properties weigh more than ``max_values``: each value (member
    or element) counted once per level it sits at, so a value at the top of a context counts 1.

    Why: the engine takes in each value for each decision while holding the worker's loop, at a cost
    that grows with the value's depth (measured, cedarpy 4.12: a 100-deep list ~4 µs per element, a
    100-deep record ~12 µs). Bytes alone do not bound it: a 1 MiB context of 100-deep lists held a
    worker 4.4 s; 65,536 plain values of 8-deep records 0.53 s. At the default weight, every shape
    measured (flat to 16 deep, lists, records, wide records, strings) took 13-70 ms within 1 MiB
    (``bench/adhoc/stop25/value_cost.py``; docs/security.md)."""
    if weight > max_values:
        raise ApiError(
            413,
            "request_too_large",
            f"the request's context and properties weigh {weight} (each value counted once per level it "
            f"sits at); the limit is {max_values} (policy_max_request_values)",
        )


@dataclass(frozen=True, slots=True)
class Batch:
    items: list[Query | wire.ItemError]
    semantic: wire.Semantic
    single: bool  # no ``evaluations`` array: answer like ``…/evaluation`` (AuthZEN §7.1)
    staged_version: int | None = None  # evaluate against this uploaded version (the client's warmer)


class _LooseEvaluations(msgspec.Struct):
    """The batch envelope with items left unchecked, so a bad item can fail alone."""

    evaluations: list[Any] | None = None
    subject: wire.Subject | None = None
    action: wire.Action | None = None
    resource: wire.Resource | None = None
    context: dict[str, Any] | None = None
    options: wire.EvaluationsOptions | None = None


_decode_batch = msgspec.json.Decoder(wire.EvaluationsRequest)


def parse_evaluations(
    body: bytes, max_items: int, *, max_bytes: int = DEFAULT_MAX_BYTES, max_values: int = DEFAULT_MAX_VALUES
) -> Batch:
    """``POST …/evaluations`` body → items (a bad item becomes an :class:`wire.ItemError`).

    The whole body is decoded into typed structs in one pass; only when that fails is it decoded
    again loosely, item by item, to tell which items are bad and why. ``max_bytes``: the request
    limit, which the batch's defaults may not pass once repeated for their items (``_check_repeated``);
    ``max_values``: what all items' contexts and properties may weigh (``_check_weight``).
    """
    batch = _parse_batch(body, max_items, max_bytes)
    weight = 0
    for item in batch.items:
        if type(item) is Query:
            weight += item.weight
    _check_weight(weight, max_values)
    return batch


def _parse_batch(body: bytes, max_items: int, max_bytes: int) -> Batch:
    _check_utf8(body)
    try:
        top = _decode_batch.decode(body)
    except msgspec.ValidationError:
        return _parse_loose(body, max_items, max_bytes)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise not_json(exc) from None
    semantic: wire.Semantic = top.options.evaluations_semantic if top.options else "execute_all"
    staged = top.options.meshauth_staged_version if top.options else None
    evaluations = top.evaluations
    if not evaluations:
        return Batch([_single(_typed_item(wire.EvaluationItem(), top, None))], semantic, True, staged)
    _check_count(len(evaluations), max_items)
    _check_repeated(top, lambda name: sum(getattr(e, name) is None for e in evaluations), max_bytes)
    # The batch's default action (a client sends one action once) is checked once, not per item.
    top_ok = plain_action(top.action) if top.action is not None else None
    items = [_typed_item(e, top, n, top_ok) for n, e in enumerate(evaluations)]
    return Batch(items, semantic, False, staged)


def _single(item: Query | wire.ItemError) -> Query:
    """Without an ``evaluations`` array the request is one evaluation: a bad one is the request's
    400 (naming the field), as on ``…/evaluation``, not a failed item."""
    if isinstance(item, Query):
        return item
    field, _, message = item.message.partition(": ")
    if item.status == 400 and message:
        raise bad_request(field, message)
    raise ApiError(item.status, "invalid_request", item.message)


def _check_count(count: int, max_items: int) -> None:
    if count > max_items:
        raise ApiError(413, "request_too_large", f"evaluations has {count} items; the limit is {max_items}")


class _Defaults(Protocol):
    subject: wire.Subject | None
    resource: wire.Resource | None
    context: dict[str, Any] | None


def _check_repeated(top: _Defaults, users: Callable[[str], int], max_bytes: int) -> None:
    """413 when the batch's default ``context`` and ``properties``, repeated for each item that uses
    them (``users(name)``: how many items leave ``name`` out), come to more than ``max_bytes``.

    Why: a default is sent once but evaluated once per item — each item's context is encoded and
    parsed by the engine, each item's properties make an entity document of its own. A 175 KB body
    whose 20,000-number context 1,024 items inherited held a worker's loop 12.6 s, and an engine
    error that quotes the context made a 146 KB body a 100 MB answer. Written out in full, such a
    batch would be over the request limit: so it is held to that limit as if it were."""
    if top.context is None and top.subject is None and top.resource is None:
        return  # the usual batch (a client sends only its action as a default): nothing to count
    repeated = (
        ("context", "context", top.context),
        ("subject.properties", "subject", top.subject.properties if top.subject is not None else None),
        ("resource.properties", "resource", top.resource.properties if top.resource is not None else None),
    )
    sizes = [(len(_plain.encode(value)) * users(name), field) for field, name, value in repeated if value]
    if sizes and sum(size for size, _ in sizes) > max_bytes:
        size, field = max(sizes)
        raise ApiError(
            413,
            "request_too_large",
            f"{field}: the batch's default, repeated for the items that use it, is {size} bytes; "
            f"the limit is {max_bytes}",
            extra={"field": field},
        )


def _typed_item(
    item: wire.EvaluationItem, top: wire.EvaluationsRequest, n: int | None, top_ok: bool | None = None
) -> Query | wire.ItemError:
    """Item ``n`` (None: the top level stands alone) with the top-level defaults merged in
    (``top_ok``: whether the top-level action is plain, when known)."""
    subject = item.subject if item.subject is not None else top.subject
    own = item.action
    action = own if own is not None else top.action
    resource = item.resource if item.resource is not None else top.resource
    context = item.context if item.context is not None else top.context
    if subject is not None and action is not None and resource is not None:
        query = plain_query(subject, action, resource, context, None if own is not None else top_ok)
        if query is not None:
            return query
    field = "" if n is None else f"evaluations[{n}]"
    prefix = f"{field}." if field else ""
    for name, value in (("subject", subject), ("action", action), ("resource", resource)):
        if value is None:
            return wire.ItemError(400, f"{prefix}{name}: is required")
    assert subject is not None and action is not None and resource is not None  # noqa: PT018 - narrowing
    try:
        return query_of(subject, action, resource, context, field)
    except ApiError as exc:
        return wire.ItemError(exc.status, exc.description)


def _parse_loose(body: bytes, max_items: int, max_bytes: int) -> Batch:
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # the typed pass may stop before the depth
        raise not_json(exc) from None
    if not isinstance(raw, dict):
        raise bad_request("body", "must be a JSON object")
    try:
        top = msgspec.convert(raw, _LooseEvaluations)
    except msgspec.ValidationError as exc:
        field, message = _field_of(exc, "")
        raise bad_request(field, message) from None
    semantic: wire.Semantic = top.options.evaluations_semantic if top.options else "execute_all"
    staged = top.options.meshauth_staged_version if top.options else None
    evaluations = top.evaluations
    if not evaluations:
        return Batch([_single(_item({}, raw, ""))], semantic, True, staged)
    _check_count(len(evaluations), max_items)
    _check_repeated(top, lambda name: sum(isinstance(e, dict) and e.get(name) is None for e in evaluations), max_bytes)
    items = [_item(e, raw, f"evaluations[{n}]") for n, e in enumerate(evaluations)]
    return Batch(items, semantic, False, staged)


def _item(item: Any, defaults: dict[str, Any], field: str) -> Query | wire.ItemError:
    if not isinstance(item, dict):
        return wire.ItemError(400, f"{field}: must be an object")
    # ``null`` is the same as leaving the field out, as in the typed pass (``_typed_item``).
    merged = {}
    for k in _ITEM_KEYS:
        value = item.get(k)
        if value is None:
            value = defaults.get(k)
        if value is not None:
            merged[k] = value
    try:
        req = msgspec.convert(merged, wire.EvaluationRequest)
        return to_query(req, field)
    except msgspec.ValidationError as exc:
        name, message = _field_of(exc, field)
        return wire.ItemError(400, f"{name}: {message}")
    except ApiError as exc:
        return wire.ItemError(exc.status, exc.description)
