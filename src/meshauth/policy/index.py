"""The scope index: evaluate a request only against the policies whose scope can match it.

Cedar evaluates every policy of a set for every request, so cost grows with the store. A policy's
scope (``principal``, ``action``, ``resource`` constraints) is conjoined with its conditions and
checked first, so a policy whose scope cannot match neither applies nor errors: dropping it changes
no decision, no determining-policy list and no error list. (So any *superset* of the policies that
can match is also exact: whatever the index cannot analyse it keeps, "may match anything".)

Built once per activation, from the policy text itself:

- the text is split into statements (Cedar numbers them ``policy0``, ``policy1``, … in order),
  and Cedar confirms the split: each statement alone is exactly one policy of its own, ending
  where the statement ends (``scopes.confirmed_by_cedar``; a count alone was fooled by a
  counterweight, stop 20), else the whole set is evaluated. Each statement's scope is read by
  one regular expression over its head. A head the expression does not cover (an escaped string,
  an unusual layout) is converted by Cedar alone (its JSON form); a policy neither can analyse
  is a wildcard. Why text rather than Cedar's typed nodes: ``PolicySet.to_pst()`` refuses valid
  policies (``decimal("1", "2", "3")`` parses and only errors when evaluated — issue 7), and
  converting 100,000 policies through Cedar's JSON took 27 s at stop 20 (load 11 on 2 cores),
  against 3.3 s for this index then (see docs/performance.md, "Stop 20, branch scopes3");
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

from meshauth.policy.cedar import PolicySet, Uid
from meshauth.policy.metrics import INDEX_CACHE
from meshauth.policy.scope_table import ScopeTable, table_for
from meshauth.policy.scopes import ANYTHING, Policy, analyse, confirmed_by_cedar, whole_set_facts

log = logging.getLogger(__name__)

DEFAULT_CACHE_KEYS = 16_384  # request keys kept per store (≥ the 10,000-key working set of issue 8)
DEFAULT_MIN_POLICIES = 48  # below this a store is evaluated whole (no subset compiles, no cache)

_EVALUATION_ERROR = re.compile(r"error while evaluating policy `(policy\d+)`")

Key = tuple[Uid, frozenset[Uid], str, str]  # (action, its ancestors, principal type, resource type)


# --- the index ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subset:
    """A compiled policy set and, when it is not the store's whole set, the store id of each of its
    policies (Cedar numbered them ``policy0`` … in this order when compiling the subset)."""

    policies: PolicySet
    ids: tuple[str, ...] | None = None
    table: ScopeTable | None = None  # a scope-only set's answers without the engine (scope_table.py)

    def store_id(self, pid: str) -> str:
        ids = self.ids
        if ids is None:
            return pid
        return ids[int(pid[6:])]

    def store_error(self, message: str) -> str:
        """Cedar's error ``message`` about one of this subset's policies, naming it by its store id.
        Cedar's only per-policy error form starts with the policy's id; only that id is renamed (an
        entity id quoted later in the message stays as written)."""
        m = _EVALUATION_ERROR.match(message)
        if m is None:
            return message
        return f"error while evaluating policy `{self.store_id(m[1])}`{message[m.end() :]}"


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
        self.whole = Subset(full, None, table_for(text, len(full)))
        self._cache_keys = max(1, cache_keys)
        policies = analyse(text)
        templates = len(full.templates())
        expected = len(full) + templates
        agree = len(policies) == expected and sum(p.template for p in policies) == templates
        # Whether the statements are Cedar's policies: the text's other readers (conditions.py) trust it only then.
        self.split_confirmed = agree and confirmed_by_cedar(policies)
        if not self.split_confirmed:
            # The split disagrees with Cedar's reading: nothing here can be trusted to name
            # policies, so evaluate the whole set and ask Cedar for ids and effects.
            log.warning(
                "policy index: %d statements read, Cedar has %d (or reads them otherwise); evaluating whole sets",
                len(policies),
                expected,
            )
            policies = [Policy(f"policy{n}", "", ANYTHING, True, None) for n in range(expected)]
            enabled = False
            self.annotations, forbids = whole_set_facts(text, expected)
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
            INDEX_CACHE.add("hit")
            return found
        INDEX_CACHE.add("miss")
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
                self._empty = Subset(PolicySet.from_str(""), (), table_for("", 0))
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
        text = "\n".join(p.text for p in chosen)
        try:
            compiled = PolicySet.from_str(text)
        except ValueError:
            compiled = None
        if compiled is None or len(compiled) != len(chosen):
            log.warning("policy index: a subset of %d policies did not compile alone; using the whole set", len(ids))
            return self.whole
        return Subset(compiled, tuple(p.id for p in chosen), table_for(text, len(chosen)))
