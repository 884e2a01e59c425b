"""The scope index: evaluate a request only against the policies whose scope can match it.

Cedar evaluates every policy of a set for every request, so cost grows with the store. A policy's
scope (``principal``, ``action``, ``resource`` constraints) is conjoined with its conditions and
checked first, so a policy whose scope cannot match neither applies nor errors: dropping it changes
no decision, no determining-policy list and no error list. (So any *superset* of the policies that
can match is also exact: whatever the index cannot analyse it keeps, "may match anything".)

Built once per activation, from the policy text itself:

- the text is split into statements (Cedar numbers them ``policy0``, ``policy1``, … in order) and
  each statement's scope is read by one regular expression over its head. A head the expression
  does not cover (an escaped string, an unusual layout) is converted by Cedar alone (its JSON
  form); a policy neither can analyse is a wildcard. Why text rather than Cedar's typed nodes:
  ``PolicySet.to_pst()`` refuses valid policies (``decimal("1", "2", "3")`` parses and only errors
  when evaluated — issue 7), and converting 100,000 policies through it or through Cedar's JSON
  takes 20–25 s, against ~1 s here;
- buckets map (action, resource type) — ``action ==`` —, (action group, resource type) — each uid
  of ``action in …`` — and the wildcards (any action, any resource type: ``in`` scopes and
  template slots fix no type) to the policies that can match, so a lookup costs O(policies that can
  match), not O(store); the principal type filters what the buckets return;
- a subset is compiled from its statements' text, so Cedar numbers its policies ``policy0`` … in
  subset order; :class:`Subset` maps them back to the store's ids (what determining-policy and
  error lists say). A subset Cedar will not compile falls back to the whole set.

Compiled subsets are cached per request key (action, its ancestors, principal type, resource type)
in a bounded LRU, and per policy-id tuple (many keys share a subset). Small stores skip the index:
evaluating a few dozen policies costs less than compiling a subset per key.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from meshauth.policy.cedar import PolicySet, Uid, policies_json
from meshauth.policy.entities import entity_refs
from meshauth.policy.metrics import INDEX_CACHE

log = logging.getLogger(__name__)

DEFAULT_CACHE_KEYS = 16_384  # request keys kept per store (≥ the 10,000-key working set of issue 8)
DEFAULT_MIN_POLICIES = 48  # below this a store is evaluated whole (no subset compiles, no cache)

Key = tuple[Uid, frozenset[Uid], str, str]  # (action, its ancestors, principal type, resource type)

# --- reading a statement's scope from its text ----------------------------------------------------

_STR = r'"(?:[^"\\]|\\.)*"'
_WS = r"(?:\s|//[^\n]*)*"
_IDENT = r"[_A-Za-z][_A-Za-z0-9]*"
_PATH = rf"{_IDENT}(?:{_WS}::{_WS}{_IDENT})*"
_UID = rf"{_PATH}{_WS}::{_WS}{_STR}"
# One statement: everything up to a ``;`` outside strings and comments.
_STATEMENT = re.compile(r'(?:[^;"/]++|"(?:[^"\\]++|\\.)*+"|//[^\n]*+|/)*+;')


def _entity_constraint(var: str) -> str:
    slot = rf"\?{var}"
    return (
        rf"(?:(?P<{var}_op>==|in){_WS}(?:(?P<{var}_eq>{_PATH}){_WS}::{_WS}{_STR}|{slot})"
        rf"|is{_WS}(?P<{var}_is>{_PATH})(?:{_WS}in{_WS}(?:{_UID}|{slot}))?)?"
    )


_HEAD = re.compile(
    rf"{_WS}(?P<annotations>(?:@{_WS}{_IDENT}{_WS}(?:\({_WS}{_STR}{_WS}\){_WS})?)*)"
    rf"(?P<effect>permit|forbid){_WS}\({_WS}"
    rf"principal{_WS}{_entity_constraint('principal')}{_WS},{_WS}"
    rf"action{_WS}(?:(?P<action_op>==|in){_WS}(?P<action_uid>{_UID})"
    rf"|in{_WS}\[(?P<action_list>{_WS}(?:{_UID}{_WS}(?:,{_WS}{_UID}{_WS})*)?)\])?{_WS},{_WS}"
    rf"resource{_WS}{_entity_constraint('resource')}{_WS}\)"
)
_UID_PARTS = re.compile(rf"(?P<type>{_PATH}){_WS}::{_WS}(?P<id>{_STR})")
_ID_ANNOTATION = re.compile(rf"@{_WS}id\b{_WS}(?:\({_WS}(?P<value>{_STR}))?")
_LAYOUT = re.compile(r"\s+|//[^\n]*")


class _Unreadable(Exception):
    """The head is valid Cedar that the expression reads ambiguously: ask Cedar instead."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a policy's scope needs of a request. ``None`` fields match anything."""

    action_eq: Uid | None  # ``action == A``
    action_in: frozenset[Uid] | None  # ``action in [A, B]`` / ``action in A``
    principal_type: str | None  # None: any type can match (``in E``, a slot, no constraint)
    resource_type: str | None

    def matches(self, actions: frozenset[Uid], action: Uid, ptype: str, rtype: str) -> bool:
        if self.principal_type is not None and self.principal_type != ptype:
            return False
        if self.resource_type is not None and self.resource_type != rtype:
            return False
        if self.action_eq is not None:
            return self.action_eq == action
        if self.action_in is not None:
            return not self.action_in.isdisjoint(actions)
        return True


ANYTHING = Scope(None, None, None, None)


@dataclass(frozen=True, slots=True)
class Policy:
    """One statement of the store: Cedar's id, its text, and what the index knows of it."""

    id: str
    text: str
    scope: Scope
    forbid: bool
    annotation: str | None  # its ``@id``
    template: bool = False


def _plain(literal: str) -> str:
    """A Cedar string literal's value; escapes are left to Cedar (exactness over speed)."""
    if "\\" in literal:
        raise _Unreadable
    return literal[1:-1]


def _path(text: str) -> str:
    return _LAYOUT.sub("", text)


def _uid(text: str) -> Uid:
    m = _UID_PARTS.fullmatch(text.strip())
    if m is None:
        raise _Unreadable
    return (_path(m["type"]), _plain(m["id"]))


def _entity_type(m: re.Match[str], var: str) -> str | None:
    if m[f"{var}_is"] is not None:
        return _path(m[f"{var}_is"])
    if m[f"{var}_op"] == "==" and m[f"{var}_eq"] is not None:
        return _path(m[f"{var}_eq"])
    return None  # any, ``in E``, or a template slot: can match any type


def read_head(pid: str, text: str) -> Policy | None:
    """The policy as read from its text, or None when the text is beyond the expression."""
    m = _HEAD.match(text)
    if m is None:
        return None
    try:
        action_eq: Uid | None = None
        action_in: frozenset[Uid] | None = None
        if m["action_op"] == "==":
            action_eq = _uid(m["action_uid"])
        elif m["action_op"] == "in":
            action_in = frozenset({_uid(m["action_uid"])})
        elif m["action_list"] is not None:
            action_in = frozenset(_uid(u[0]) for u in _UID_PARTS.finditer(m["action_list"]))
        annotation: str | None = None
        for a in _ID_ANNOTATION.finditer(m["annotations"]):
            if a["value"] is None:
                raise _Unreadable  # ``@id`` without a value: let Cedar say what it means
            annotation = _plain(a["value"])
    except _Unreadable:
        return None
    scope = Scope(action_eq, action_in, _entity_type(m, "principal"), _entity_type(m, "resource"))
    template = "?principal" in m[0] or "?resource" in m[0]
    return Policy(pid, text, scope, m["effect"] == "forbid", annotation, template)


# --- asking Cedar (its JSON form) for what the expression cannot read ------------------------------


class _EstPolicy(msgspec.Struct):
    effect: str
    principal: dict[str, Any]
    action: dict[str, Any]
    resource: dict[str, Any]
    annotations: dict[str, str | None] = {}


class _Est(msgspec.Struct):
    staticPolicies: dict[str, _EstPolicy] = {}
    templates: dict[str, _EstPolicy] = {}


_est_decoder = msgspec.json.Decoder(_Est)


def _est_uid(e: Any) -> Uid:
    return (str(e["type"]), str(e["id"]))


def _est_type(c: dict[str, Any]) -> str | None:
    op = c.get("op")
    if op == "==" and "entity" in c:
        return str(c["entity"]["type"])
    if op == "is":
        return str(c["entity_type"])
    return None


def _est_scope(p: _EstPolicy) -> Scope:
    action_eq: Uid | None = None
    action_in: frozenset[Uid] | None = None
    op = p.action.get("op")
    if op == "==":
        action_eq = _est_uid(p.action["entity"])
    elif op == "in" and "entity" in p.action:
        action_in = frozenset({_est_uid(p.action["entity"])})
    elif op == "in":
        action_in = frozenset(_est_uid(e) for e in p.action["entities"])
    elif op != "All":
        return ANYTHING
    return Scope(action_eq, action_in, _est_type(p.principal), _est_type(p.resource))


def ask_cedar(pid: str, text: str) -> Policy:
    """The policy as Cedar's JSON form describes it; a wildcard (and, effect unknown, treated as a
    forbid: fail closed) when even that conversion fails."""
    try:
        est = _est_decoder.decode(policies_json(text))
        ((_, p), template) = (
            (next(iter(est.staticPolicies.items())), False)
            if est.staticPolicies
            else (next(iter(est.templates.items())), True)
        )
        annotation = p.annotations.get("id")
        return Policy(pid, text, _est_scope(p), p.effect == "forbid", annotation, template)
    except Exception:  # noqa: BLE001 - anything Cedar cannot convert is analysed as "matches anything"
        log.info("policy %s: scope not analysable; it is evaluated for every request", pid)
        return Policy(pid, text, ANYTHING, True, None)


def statements(text: str) -> list[str]:
    """The text of each statement, in Cedar's order (``policyN`` is the N-th)."""
    return [m[0] for m in _STATEMENT.finditer(text)]


def analyse(text: str) -> list[Policy]:
    return [read_head(f"policy{n}", s) or ask_cedar(f"policy{n}", s) for n, s in enumerate(statements(text))]


# --- the index ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subset:
    """A compiled policy set and, when it is not the store's whole set, the store id of each of its
    policies (Cedar numbered them ``policy0`` … in this order when compiling the subset)."""

    policies: PolicySet
    ids: tuple[str, ...] | None = None

    def store_id(self, pid: str) -> str:
        ids = self.ids
        if ids is None:
            return pid
        return ids[int(pid[6:])]


class PolicyIndex:
    """The compiled active version of one store: the full set, and subsets picked by scope."""

    def __init__(
        self,
        full: PolicySet,
        text: str = "",
        *,
        enabled: bool = True,
        cache_keys: int = DEFAULT_CACHE_KEYS,
        min_policies: int = DEFAULT_MIN_POLICIES,
    ) -> None:
        started = time.perf_counter()
        self.full = full
        self.whole = Subset(full)
        self._cache_keys = max(1, cache_keys)
        policies = analyse(text)
        templates = len(full.templates())
        expected = len(full) + templates
        if len(policies) != expected or sum(p.template for p in policies) != templates:
            # The split disagrees with Cedar's numbering: nothing here can be trusted to name
            # policies, so evaluate the whole set and ask Cedar for ids and effects.
            log.warning(
                "policy index: %d statements read, Cedar has %d; evaluating whole sets", len(policies), expected
            )
            policies = [Policy(f"policy{n}", "", ANYTHING, True, None) for n in range(expected)]
            enabled = False
            self.annotations, forbids = _whole_set_facts(text, expected)
        else:
            self.annotations = {p.id: p.annotation for p in policies if p.annotation is not None}
            forbids = {p.id for p in policies if p.forbid}
        # Forbid policies: one that cannot be evaluated for want of an entity fails closed (evaluator).
        self.forbids: frozenset[str] = frozenset(forbids)
        self._policies = [p for p in policies if not p.template]  # templates authorize nothing
        # The bound adapts to the store: one key per policy is the working set of a store whose
        # policies each serve one (action, resource type) — 100,000 policies, 100,000 hot keys.
        self._cache_keys = max(self._cache_keys, len(self._policies))
        self._count = len(full)
        self.enabled = enabled and len(self._policies) >= min_policies
        self.unanalysed = sum(p.scope is ANYTHING for p in self._policies)
        self._eq: dict[tuple[Uid, str | None], list[int]] = {}
        self._in: dict[tuple[Uid, str | None], list[int]] = {}
        self._any: dict[str | None, list[int]] = {}
        self._ptype: list[str | None] = []
        if self.enabled:
            for n, p in enumerate(self._policies):
                s = p.scope
                self._ptype.append(s.principal_type)
                if s.action_eq is not None:
                    self._eq.setdefault((s.action_eq, s.resource_type), []).append(n)
                elif s.action_in is not None:
                    for a in s.action_in:
                        self._in.setdefault((a, s.resource_type), []).append(n)
                else:
                    self._any.setdefault(s.resource_type, []).append(n)
        self._by_key: OrderedDict[Key, Subset] = OrderedDict()
        self._by_ids: OrderedDict[tuple[int, ...], Subset] = OrderedDict()
        self._empty: Subset | None = None
        self.build_seconds = time.perf_counter() - started

    def __len__(self) -> int:
        return self._count

    def display_id(self, policy_id: str) -> str:
        """The ``@id`` annotation when the policy has one, else Cedar's positional id."""
        return self.annotations.get(policy_id, policy_id)

    def matching(self, action: Uid, ancestors: frozenset[Uid], ptype: str, rtype: str) -> tuple[int, ...]:
        """Positions of the policies whose scope can match: O(ancestors + candidates)."""
        found: set[int] = set()
        eq, in_, any_ = self._eq, self._in, self._any
        for rt in (rtype, None):
            found.update(eq.get((action, rt), ()))
            found.update(in_.get((action, rt), ()))
            for a in ancestors:
                found.update(in_.get((a, rt), ()))
            found.update(any_.get(rt, ()))
        ptypes = self._ptype
        return tuple(sorted(n for n in found if (t := ptypes[n]) is None or t == ptype))

    def policies_for(self, action: Uid, action_ancestors: frozenset[Uid], ptype: str, rtype: str) -> Subset:
        """The smallest compiled set that decides requests with this action and these types."""
        if not self.enabled:
            return self.whole
        key = (action, action_ancestors, ptype, rtype)
        cache = self._by_key
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            INDEX_CACHE.counts[("hit",)] += 1
            return found
        INDEX_CACHE.counts[("miss",)] += 1
        subset = self._subset(self.matching(action, action_ancestors, ptype, rtype))
        cache[key] = subset
        if len(cache) > self._cache_keys:
            cache.popitem(last=False)
        return subset

    def hot_keys(self, limit: int) -> list[Key]:
        """The most recently used request keys, most recent first (to compile ahead on activation)."""
        out: list[Key] = []
        for key in reversed(self._by_key):
            if len(out) >= limit:
                break
            out.append(key)
        return out

    def warm(self, keys: Iterable[Key], *, budget_seconds: float) -> int:
        """Compile the subsets of ``keys`` now (before this version takes traffic); stops at the
        budget so an activation is never held up long. Returns how many keys were warmed."""
        if not self.enabled:
            return 0
        deadline = time.perf_counter() + budget_seconds
        warmed = 0
        for action, ancestors, ptype, rtype in keys:
            if time.perf_counter() > deadline:
                break
            key = (action, ancestors, ptype, rtype)
            if key not in self._by_key:
                self._by_key[key] = self._subset(self.matching(action, ancestors, ptype, rtype))
                warmed += 1
        while len(self._by_key) > self._cache_keys:
            self._by_key.popitem(last=False)
        return warmed

    def _subset(self, ids: tuple[int, ...]) -> Subset:
        if len(ids) == len(self._policies):
            return self.whole
        if not ids:
            if self._empty is None:
                self._empty = Subset(PolicySet.from_str(""), ())
            return self._empty
        by_ids = self._by_ids
        found = by_ids.get(ids)
        if found is not None:
            by_ids.move_to_end(ids)
            return found
        subset = self._compile(ids)
        by_ids[ids] = subset
        if len(by_ids) > self._cache_keys:
            by_ids.popitem(last=False)
        return subset

    def _compile(self, ids: tuple[int, ...]) -> Subset:
        chosen = [self._policies[n] for n in ids]
        try:
            compiled = PolicySet.from_str("\n".join(p.text for p in chosen))
        except ValueError:
            compiled = None
        if compiled is None or len(compiled) != len(chosen):
            log.warning("policy index: a subset of %d policies did not compile alone; using the whole set", len(ids))
            return self.whole
        return Subset(compiled, tuple(p.id for p in chosen))


def _whole_set_facts(text: str, count: int) -> tuple[dict[str, str], set[str]]:
    """``@id`` annotations and forbid ids from Cedar's JSON form of the whole text; when even that
    fails, no annotations and every policy counted as a forbid (the missing-entity check then fails
    closed for all)."""
    try:
        est = _est_decoder.decode(policies_json(text))
    except Exception:  # noqa: BLE001 - see the docstring
        return {}, {f"policy{n}" for n in range(count)}
    both = {**est.staticPolicies, **est.templates}
    annotations = {pid: a for pid, p in both.items() if (a := p.annotations.get("id")) is not None}
    return annotations, {pid for pid, p in both.items() if p.effect == "forbid"}


# --- what the conditions reach (for the entity loader) --------------------------------------------
#
# Read from the text, not from Cedar's JSON form: that conversion costs ~0.2 ms per policy, which
# was most of the cost of loading a small store on demand (and ~25 s for 100,000 policies).

_LITERAL = re.compile(rf"(?P<uid>\b{_UID})|{_STR}|//[^\n]*")
# Attribute access (``.a`` not followed by a call), tag access (``.getTag(``, ``.hasTag(``), ``has``
# and ``[`` (indexing, or a set literal: counted too — an upper bound is all the loader needs).
_ACCESS = re.compile(
    rf"{_STR}|//[^\n]*|(?P<access>\.{_WS}(?:getTag|hasTag){_WS}\(|\.{_WS}{_IDENT}+(?!{_WS}\()|\bhas\b|\[)"
)


@dataclass(frozen=True, slots=True)
class ConditionFacts:
    """What the entity loader needs from a store's conditions: the entity uids they name
    literally (scope uids left out), and a bound on how many attribute/tag accesses they chain
    (None: unknown, follow references as deep as parents)."""

    literals: tuple[Uid, ...]
    ref_hops: int | None


def condition_facts(text: str) -> ConditionFacts:
    """Read per statement: literals in the conditions (a literal inside a string or comment is
    skipped; one the expression cannot decode is taken from Cedar's form of that statement), and
    the most accesses any one statement's conditions make — no chain in a statement is longer.
    Never raises for text Cedar accepts."""
    found: dict[Uid, None] = {}
    hops = 0
    for stmt in statements(text):
        head = _HEAD.match(stmt)
        body = stmt[head.end() :] if head else stmt  # unread head: its scope uids too (a superset)
        for m in _LITERAL.finditer(body):
            if m["uid"] is None:
                continue
            try:
                found[_uid(m["uid"])] = None
            except _Unreadable:
                found.update(dict.fromkeys(_cedar_literals(stmt)))
        hops = max(hops, sum(1 for m in _ACCESS.finditer(body) if m["access"] is not None))
    return ConditionFacts(tuple(found), hops)


def condition_literals(text: str) -> tuple[Uid, ...]:
    return condition_facts(text).literals


def _cedar_literals(stmt: str) -> list[Uid]:
    try:
        tree = msgspec.json.decode(policies_json(stmt))
    except Exception:  # noqa: BLE001 - nothing more to learn from Cedar
        return []
    policies = [*tree.get("staticPolicies", {}).values(), *tree.get("templates", {}).values()]
    return entity_refs([p.get("conditions", []) for p in policies])
