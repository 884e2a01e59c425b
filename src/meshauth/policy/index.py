"""The scope index: evaluate a request only against the policies whose scope can match it.

Cedar evaluates every policy of a set for every request, so cost grows with the store. A policy's
scope (``principal``, ``action``, ``resource`` constraints) is conjoined with its conditions and
checked first, so a policy whose scope cannot match neither applies nor errors: dropping it changes
no decision, no determining-policy list and no error list. The index keeps, per policy, what its
scope needs:

- action: ``==`` a uid, ``in`` a set of uids (matches the uid or any descendant), or anything;
- principal / resource type: ``== T::"x"``, ``is T`` and ``is T in …`` fix the type; ``in E`` and
  an unconstrained scope do not (an entity of any type may descend from ``E``).

A request is keyed by (its action with all the action's ancestors, principal type, resource type);
the policies that can match a key are compiled into their own ``PolicySet`` once per store revision
and reused (bounded caches).
"""

from __future__ import annotations

from dataclasses import dataclass

from cedarpy import pst

from meshauth.policy.cedar import PolicySet, Uid

DEFAULT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Scope:
    action_eq: Uid | None  # ``action == A``
    action_in: frozenset[Uid] | None  # ``action in [A, B]`` / ``action in A``
    principal_type: str | None  # None: any type can match
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


def _uid(e: pst.EntityUid) -> Uid:
    return (str(e.type), e.id)


def _entity_type(c: pst.PrincipalOrResourceConstraint) -> str | None:
    if isinstance(c, pst.ScopeEq) and isinstance(c.entity, pst.EntityUid):
        return str(c.entity.type)
    if isinstance(c, pst.ScopeIs | pst.ScopeIsIn):
        return str(c.entity_type)
    return None  # any, ``in E``, or a template slot: can match any type


def scope_of(policy: pst.Template) -> Scope:
    action_eq: Uid | None = None
    action_in: frozenset[Uid] | None = None
    if isinstance(policy.action, pst.ActionEq):
        action_eq = _uid(policy.action.entity)
    elif isinstance(policy.action, pst.ActionIn):
        action_in = frozenset(_uid(e) for e in policy.action.entities)
    return Scope(action_eq, action_in, _entity_type(policy.principal), _entity_type(policy.resource))


class PolicyIndex:
    """The compiled active version of one store: the full set, and subsets picked by scope."""

    def __init__(self, full: PolicySet, *, enabled: bool = True, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.full = full
        self.enabled = enabled
        self._cache_size = cache_size
        tree = full.to_pst()
        self._policies: dict[str, pst.Template] = dict(tree.static_policies)
        self.annotations: dict[str, str] = {
            pid: p.annotations["id"] for pid, p in self._policies.items() if "id" in p.annotations
        }
        # Forbid policies: one that cannot be evaluated for want of an entity fails closed (evaluator).
        self.forbids: frozenset[str] = frozenset(pid for pid, p in self._policies.items() if p.effect == "forbid")
        self._scopes = [(pid, scope_of(p)) for pid, p in self._policies.items()]
        # Bounded by clearing, not LRU: a hit then costs one dict lookup (it runs once per decision).
        self._by_key: dict[tuple[frozenset[Uid], Uid, str, str], PolicySet] = {}
        self._by_ids: dict[tuple[str, ...], PolicySet] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def display_id(self, policy_id: str) -> str:
        """The ``@id`` annotation when the policy has one, else Cedar's positional id."""
        return self.annotations.get(policy_id, policy_id)

    def policies_for(self, action: Uid, action_ancestors: frozenset[Uid], ptype: str, rtype: str) -> PolicySet:
        """The smallest compiled set that decides requests with this action and these types."""
        if not self.enabled:
            return self.full
        key = (action_ancestors, action, ptype, rtype)
        found = self._by_key.get(key)
        if found is not None:
            return found
        actions = action_ancestors | {action}
        ids = tuple(pid for pid, s in self._scopes if s.matches(actions, action, ptype, rtype))
        subset = self._by_ids.get(ids)
        if subset is None:
            subset = self._compile(ids)
            if len(self._by_ids) >= self._cache_size:
                self._by_ids.clear()  # rare: more distinct subsets than keys; rebuild on demand
            self._by_ids[ids] = subset
        if len(self._by_key) >= self._cache_size:
            self._by_key.clear()  # more keys than expected (many action groups): start over
        self._by_key[key] = subset
        return subset

    def _compile(self, ids: tuple[str, ...]) -> PolicySet:
        if len(ids) == len(self._policies):
            return self.full
        # Keeping Cedar's ids (policy0, …) keeps determining-policy lists identical to the full set's.
        chosen = {pid: self._policies[pid] for pid in ids}
        return PolicySet.from_pst(pst.PolicySet(templates={}, static_policies=chosen, template_links=()))
