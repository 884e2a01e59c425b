"""Decisions without the engine for a policy set Cedar would decide by scope alone.

A static policy with no ``when``/``unless`` whose principal and resource constraints are ``All``,
``==`` or ``is`` (no ``in``: that needs the entity hierarchy) and whose action constraint is
``All`` or ``==`` applies exactly when the request's three uids match its scope: no entity, no
context and no schema takes part. For a set made only of such policies Cedar's answer is fixed:
Deny naming the matching forbids when one matches; else Allow naming the matching permits when
one matches; else Deny naming none; never an error. The set is read from Cedar's own JSON form of
the text (``cedar.policies_json``): nothing here parses Cedar, and a set with anything else in it
(a condition, an ``in``, a template or link, a count that differs from the compiled set's) gets no
table and goes to the engine as before.

Why: the engine was ~7–8 µs of a batched decision's ~21 µs of client + service CPU (cedarpy 4.12,
64 requests per call, the benchmark's 2-policy set: 8.15 µs per request with its request building
and answer decoding, against 0.65 µs here — ``bench/adhoc/issue10-batch2/table_micro.py``;
docs/performance.md issue 10 (b), branch ``batch2``). The evaluator uses a table only for sets of at
most :data:`MAX_POLICIES` policies, for stores without a schema (with one, Cedar validates each
request against it), for queries without properties and with a :func:`plain_context` (Cedar parses
a context: a float or a malformed extension value is an error there; a list of strings — the gate's
``scope`` — is a set Cedar takes, so the gate's checks are table-decided too).
``tests/policy/test_scope_table.py`` checks it against the engine (Hypothesis: random sets and requests,
same decision and reasons).
"""

from __future__ import annotations

from typing import Any

import msgspec

from meshauth.policy.cedar import Uid, policies_json

__all__ = ["MAX_POLICIES", "ScopeTable", "plain_context", "table_for"]

MAX_POLICIES = 32  # converting the text costs per compiled set; larger sets are rarely scope-only

# A constraint: None (any), a uid (``==``) or a type name (``is``).
Constraint = Uid | str | None
_Entry = tuple[str, Constraint, Uid | None, Constraint]  # (Cedar's policy id, principal, action, resource)


def _matches(c: Constraint, uid: Uid) -> bool:
    if c is None:
        return True
    if type(c) is str:
        return uid[0] == c
    return c == uid


class ScopeTable:
    """The forbids and permits of a scope-only set, in Cedar's numbering (``policy0`` …)."""

    __slots__ = ("forbids", "permits")

    def __init__(self, forbids: list[_Entry], permits: list[_Entry]) -> None:
        self.forbids, self.permits = forbids, permits

    def decide(self, principal: Uid, action: Uid, resource: Uid) -> tuple[bool, list[str]]:
        """(allowed, the determining policies' ids), as Cedar decides the request."""
        hit = [
            pid
            for pid, p, a, r in self.forbids
            if (a is None or a == action) and _matches(p, principal) and _matches(r, resource)
        ]
        if hit:
            return False, hit
        hit = [
            pid
            for pid, p, a, r in self.permits
            if (a is None or a == action) and _matches(p, principal) and _matches(r, resource)
        ]
        return bool(hit), hit


_I64 = range(-(2**63), 2**63)


def plain_context(context: dict[str, Any] | None) -> bool:
    """Whether Cedar takes this context without an error: strings, booleans and 64-bit integers, and
    lists of them (Cedar sets: the gate sends ``scope`` as one), under keys that are no escape
    (``__entity``, ``__extn``). A float, a ``null``, an out-of-range integer, a record or an extension
    value that does not parse is an error in the engine's answer — or may be — so a query carrying
    anything else goes to the engine."""
    if context is None:
        return True
    for key, value in context.items():
        if key.startswith("__"):
            return False
        kind = type(value)
        if kind is str or kind is bool or (kind is int and value in _I64):
            continue
        if kind is not list or not all(_plain_scalar(v) for v in value):
            return False
    return True


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    return kind is str or kind is bool or (kind is int and value in _I64)


def _entity(node: Any) -> Uid | None:
    if isinstance(node, dict) and set(node) == {"type", "id"}:
        etype, eid = node["type"], node["id"]
        if type(etype) is str and type(eid) is str:
            return etype, eid
    return None


def _scope(node: Any) -> tuple[bool, Constraint]:
    """(readable, constraint) of a principal or resource scope node."""
    if not isinstance(node, dict):
        return False, None
    op = node.get("op")
    if op == "All" and set(node) == {"op"}:
        return True, None
    if op == "==" and set(node) == {"op", "entity"}:
        uid = _entity(node["entity"])
        return uid is not None, uid
    if op == "is" and set(node) == {"op", "entity_type"} and type(node["entity_type"]) is str:
        return True, node["entity_type"]
    return False, None


def table_for(text: str, count: int) -> ScopeTable | None:
    """The table of ``text`` (compiled by Cedar into ``count`` policies), or None when any policy
    is not scope-only, the set is larger than :data:`MAX_POLICIES`, or Cedar's JSON form disagrees."""
    if count > MAX_POLICIES:
        return None
    try:
        tree = msgspec.json.decode(policies_json(text))
    except (ValueError, msgspec.DecodeError):
        return None
    if not isinstance(tree, dict) or tree.get("templates") or tree.get("templateLinks"):
        return None
    static = tree.get("staticPolicies") or {}
    if not isinstance(static, dict) or len(static) != count:
        return None
    forbids: list[_Entry] = []
    permits: list[_Entry] = []
    for n in range(count):
        policy = static.get(f"policy{n}")
        if not isinstance(policy, dict) or policy.get("conditions") != []:
            return None
        p_ok, p = _scope(policy.get("principal"))
        r_ok, r = _scope(policy.get("resource"))
        action = policy.get("action")
        if not (p_ok and r_ok and isinstance(action, dict)):
            return None
        if action.get("op") == "All" and set(action) == {"op"}:
            a: Uid | None = None
        elif action.get("op") == "==" and set(action) == {"op", "entity"} and _entity(action["entity"]) is not None:
            a = _entity(action["entity"])
        else:
            return None
        effect = policy.get("effect")
        if effect == "forbid":
            forbids.append((f"policy{n}", p, a, r))
        elif effect == "permit":
            permits.append((f"policy{n}", p, a, r))
        else:
            return None
    return ScopeTable(forbids, permits)
