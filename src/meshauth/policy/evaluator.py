"""Batched evaluation: de-duplicate, load entities once, evaluate per policy subset, answer in order.

For a batch: identical queries are evaluated once; the entities of every query come from one
loader call and are parsed into one Cedar ``Entities`` handle (or, for a store small enough to be
kept whole, from its current snapshot: see ``snapshot.py``); queries are grouped by the policy
subset the scope index picks for them, and each group is one ``is_authorized_batch`` call.

Queries carrying ``properties`` get an entity set of their own (the stored entity with the
properties merged over its attributes — or under them, for a store whose ``attribute_precedence``
is "stored" — plus what it reaches), so they never leak into the shared handle. A shared handle
that Cedar rejects (an entity not conforming to the schema) is split per query, so one bad entity
fails only the queries that use it."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence

from meshauth import wire
from meshauth.policy import cedar
from meshauth.policy.authzen import Query
from meshauth.policy.cedar import Uid
from meshauth.policy.entity_loader import EntityLoader, HierarchyTooDeep
from meshauth.policy.entity_record import EntityRecord, bare_entity, entity_refs
from meshauth.policy.index import Subset
from meshauth.policy.metrics import ENGINE_CALLS, TABLE_DECISIONS, add_many
from meshauth.policy.scope_table import ScopeTable, plain_context
from meshauth.policy.snapshot import Snapshot
from meshauth.policy.state import StoreState

_NONE: frozenset[Uid] = frozenset()


def _ancestors(uid: Uid, parents_of: dict[Uid, tuple[Uid, ...]]) -> frozenset[Uid]:
    direct = parents_of.get(uid)
    if not direct:
        return _NONE  # most actions: no groups, and no allocation
    seen: set[Uid] = set()
    stack = list(direct)
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(parents_of.get(p, ()))
    return frozenset(seen)


def _closure(roots: Iterable[Uid], loaded: dict[Uid, EntityRecord]) -> list[EntityRecord]:
    seen: set[Uid] = set()
    out: list[EntityRecord] = []
    stack = list(roots)
    while stack:
        uid = stack.pop()
        if uid in seen:
            continue
        seen.add(uid)
        rec = loaded.get(uid)
        if rec is not None:
            out.append(rec)
            stack.extend(rec.parents)
            stack.extend(rec.refs)
    return out


def _document(parts: Iterable[bytes]) -> str:
    return (b"[" + b",".join(parts) + b"]").decode()


def _roots(q: Query, with_action: bool, literals: Sequence[Uid]) -> list[Uid]:
    roots = [q.principal, q.resource, *literals]
    if with_action:
        roots.append(q.action)
    for extra in (q.context, q.principal_attrs, q.resource_attrs):
        if extra:
            roots.extend(entity_refs(extra))
    return roots


class Evaluator:
    def __init__(self, loader: EntityLoader) -> None:
        self.loader = loader
        self.engine_calls = 0  # for tests and metrics

    async def decide(
        self,
        state: StoreState,
        items: Sequence[Query | wire.ItemError],
        snapshot: Snapshot | None = None,
    ) -> list[wire.Decision]:
        """Answer ``items`` in order. With a current ``snapshot``, queries without properties use
        it instead of loading and parsing their entities."""
        if snapshot is not None and len(items) == 1:
            only = items[0]
            if isinstance(only, Query) and only.principal_attrs is None and only.resource_attrs is None:
                return [self._one(state, only, snapshot)]
        unique: dict[Hashable, Query] = {}
        for item in items:
            if isinstance(item, Query):
                unique.setdefault(item.key, item)
        queries = list(unique.values())
        shared = [q for q in queries if q.principal_attrs is None and q.resource_attrs is None]
        own = [q for q in queries if q.principal_attrs is not None or q.resource_attrs is not None]
        with_action = state.schema_actions is None
        roots: list[Uid] = []
        for q in own if snapshot is not None else queries:
            roots.extend(_roots(q, with_action, state.literals))
        try:
            loaded = (
                await self.loader.load(
                    state.name, roots, ref_hops=state.ref_hops, entities_version=state.entities_version
                )
                if roots
                else {}
            )
        except HierarchyTooDeep as exc:
            if len(queries) > 1:  # halved until the deep query is alone: it denies itself, not the batch
                h = len(items) // 2  # (not item by item: one deep query would make a batch n engine calls)
                return [*await self.decide(state, items[:h], snapshot), *await self.decide(state, items[h:], snapshot)]
            deep = wire.ItemError(422, f"entities: {exc}")
            return [_item_error(state, i if isinstance(i, wire.ItemError) else deep) for i in items]
        answers: dict[Hashable, wire.Decision] = {}
        if shared and snapshot is not None:
            parents_of = state.schema_actions if state.schema_actions is not None else snapshot.action_parents
            self._run(state, shared, snapshot.handle, parents_of, answers)
        elif shared:
            self._run_document(state, shared, _document(r.json for r in loaded.values()), loaded, answers)
        for q in own:
            self._run_document(state, [q], self._own_document(q, loaded, state), loaded, answers)
        out: list[wire.Decision] = []
        for item in items:
            if isinstance(item, Query):
                out.append(answers[item.key])
            else:
                out.append(_item_error(state, item))
        return out

    def _one(self, state: StoreState, q: Query, snapshot: Snapshot) -> wire.Decision:
        """The common case, kept short: one query, answered from the snapshot."""
        parents_of = state.schema_actions if state.schema_actions is not None else snapshot.action_parents
        subset = state.index.policies_for(q.action, _ancestors(q.action, parents_of), q.principal[0], q.resource[0])
        if subset.table is not None and state.schema is None:  # _by_table sends it back if it cannot
            answers: dict[Hashable, wire.Decision] = {}
            if not self._by_table(state, [q], subset.table, subset, answers):
                return answers[q.key]
        self.engine_calls += 1
        ENGINE_CALLS.add("snapshot")
        request = cedar.request(q.principal, q.action, q.resource, q.context)
        (result,) = cedar.authorize([request], subset.policies, snapshot.handle, state.schema)
        return _decision(state, result, subset)

    def _own_document(self, q: Query, loaded: dict[Uid, EntityRecord], state: StoreState) -> str:
        overrides = {q.principal: q.principal_attrs, q.resource: q.resource_attrs}
        stored_wins = state.attribute_precedence != "request"  # fail closed on anything else
        parts: dict[Uid, bytes] = {}
        for rec in _closure(_roots(q, True, state.literals), loaded):
            attrs = overrides.get(rec.uid)
            parts[rec.uid] = rec.with_attrs(attrs, stored_wins=stored_wins) if attrs else rec.json
        for uid, attrs in overrides.items():
            if attrs and uid not in parts:
                parts[uid] = bare_entity(uid, attrs)
        return _document(parts.values())

    def _run_document(
        self,
        state: StoreState,
        queries: list[Query],
        doc: str,
        loaded: dict[Uid, EntityRecord],
        answers: dict[Hashable, wire.Decision],
    ) -> None:
        """Parse ``doc`` once and evaluate ``queries`` with it; a document Cedar rejects is split
        per query, so a bad entity fails only the queries that reach it."""
        try:
            entities = cedar.parse_entities(doc, state.schema)
        except ValueError as exc:
            if len(queries) > 1:
                for q in queries:
                    own = _document(rec.json for rec in _closure(_roots(q, True, state.literals), loaded))
                    self._run_document(state, [q], own, loaded, answers)
                return
            for q in queries:
                answers[q.key] = _item_error(state, wire.ItemError(400, f"entities: {exc}"))
            return
        parents_of = state.schema_actions
        if parents_of is None:
            parents_of = {uid: rec.parents for uid, rec in loaded.items()}
        self._run(state, queries, entities, parents_of, answers)

    def _run(
        self,
        state: StoreState,
        queries: list[Query],
        entities: cedar.Entities,
        parents_of: dict[Uid, tuple[Uid, ...]],
        answers: dict[Hashable, wire.Decision],
    ) -> None:
        """One engine call per policy subset the scope index picks for these queries."""
        groups: dict[int, list[Query]] = {}
        sets: dict[int, Subset] = {}
        index = state.index
        policies_for = index.policies_for
        if not index.enabled:  # a small store is evaluated whole: one group, no lookup per query
            groups[id(index.whole)], sets[id(index.whole)] = queries, index.whole
        for q in queries if index.enabled else ():
            action = q.action
            ancestors = _ancestors(action, parents_of) if action in parents_of else _NONE
            subset = policies_for(action, ancestors, q.principal[0], q.resource[0])
            group = groups.get(id(subset))
            if group is None:
                groups[id(subset)] = [q]
                sets[id(subset)] = subset
            else:
                group.append(q)
        schema = state.schema
        for key, group in groups.items():
            subset = sets[key]
            table = subset.table if schema is None else None
            if table is not None:
                group = self._by_table(state, group, table, subset, answers)
                if not group:
                    continue
            self.engine_calls += 1
            add_many(ENGINE_CALLS, 1, "batch")
            requests = [cedar.request(q.principal, q.action, q.resource, q.context) for q in group]
            results = cedar.authorize(requests, subset.policies, entities, schema)
            # Most answers of a group are alike: cedar.authorize gives alike answers one Result, and
            # each Result's decision is built once, shared by its items (answers are only encoded
            # and audited). ``results`` holds every Result meanwhile: no id is reused in this loop.
            alike: dict[int, wire.Decision] = {}
            for q, result in zip(group, results, strict=True):
                d = alike.get(id(result))
                if d is None:
                    d = alike[id(result)] = _decision(state, result, subset)
                answers[q.key] = d

    @staticmethod
    def _by_table(
        state: StoreState, group: list[Query], table: ScopeTable, subset: Subset, answers: dict[Hashable, wire.Decision]
    ) -> list[Query]:
        """Answer the group's plain queries (a plain context, no properties) from a scope-only set's
        table (``scope_table.py``: as the engine would, without it); returns the rest, for the engine."""
        rest: list[Query] = []
        alike: dict[tuple[bool, tuple[str, ...]], wire.Decision] = {}
        for q in group:
            if not plain_context(q.context) or q.principal_attrs is not None or q.resource_attrs is not None:
                rest.append(q)
                continue
            allowed, hit = table.decide(q.principal, q.action, q.resource)
            kind = (allowed, tuple(hit))
            d = alike.get(kind)
            if d is None:
                result = cedar.Result("Allow" if allowed else "Deny", cedar.Diagnostics(reason=hit))
                d = alike[kind] = _decision(state, result, subset)
            answers[q.key] = d
        TABLE_DECISIONS.add_many(len(group) - len(rest))
        return rest


def _decision(state: StoreState, result: cedar.Result, subset: Subset) -> wire.Decision:
    index = state.index
    errors = result.diagnostics.errors
    if subset.ids is None:
        policies = [index.display_id(pid) for pid in result.diagnostics.reason]
    else:
        # The subset was compiled on its own, so Cedar numbered its policies from policy0: say the
        # store's ids, as the whole set would.
        policies = [index.display_id(subset.store_id(pid)) for pid in result.diagnostics.reason]
        if errors:
            errors = [subset.store_error(e) for e in errors]
    allowed = result.decision == "Allow"
    if allowed and errors and index.forbids:
        # Fail closed: a forbid that errored on a missing entity might have applied.
        failed = [m[1] for e in errors if (m := _MISSING_ENTITY.match(e)) and m[1] in index.forbids]
        if failed:
            allowed = False
            policies = [index.display_id(pid) for pid in failed]
            errors = [*errors, *(f"policy `{pid}` is a forbid that needs a missing entity: denied" for pid in failed)]
    if errors and index.annotations:
        errors = [_rename(e, index.annotations) for e in errors]
    return wire.Decision(
        decision=allowed,
        # entities_version beside revision: the state a client's decision cache keys this answer by
        # (AuthZEN allows extra context fields). Never newer than the entities the answer used: a
        # state's version is set only after the entity cache was cleared for it.
        context=wire.DecisionContext(
            revision=state.revision, policies=policies, errors=errors, entities_version=state.entities_version
        ),
    )


_MISSING_ENTITY = re.compile(r"error while evaluating policy `(policy\d+)`: entity `.*` does not exist$", re.DOTALL)
_POLICY_ID = re.compile(r"`(policy\d+)`")


def _rename(message: str, annotations: dict[str, str]) -> str:
    """Engine messages name policies by position; say their ``@id`` instead when they have one."""
    return _POLICY_ID.sub(lambda m: f"`{annotations.get(m[1], m[1])}`", message)


def _item_error(state: StoreState, error: wire.ItemError) -> wire.Decision:
    return wire.Decision(
        decision=False,
        context=wire.DecisionContext(
            revision=state.revision, errors=[error.message], error=error, entities_version=state.entities_version
        ),
    )
