"""A compiled store as one worker serves it (:class:`StoreState`), and how one is built.

A state is immutable: a new one replaces the old in a single dict assignment, so a request sees
either the old or the new policy set, never a mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from meshauth.policy import stores
from meshauth.policy.cedar import Schema, Uid, parse_policies, parse_schema, schema_action_parents
from meshauth.policy.conditions import condition_facts
from meshauth.policy.index import DEFAULT_CACHE_KEYS, DEFAULT_MIN_POLICIES, Key, PolicyIndex
from meshauth.policy.snapshot import Snapshot


@dataclass(frozen=True, slots=True, weakref_slot=True)
class CompiledText:
    """What a policy text compiles to under a schema: nothing in it depends on the store, so stores
    with the same text and schema share one (``compiled_texts.py``)."""

    index: PolicyIndex
    schema: Schema | None
    # The action hierarchy a schema declares; None when the store has no schema (then action
    # entities and their parents come from the store's entities, like any other entity).
    schema_actions: dict[Uid, tuple[Uid, ...]] | None
    # Entities the policy text names literally (``Config::"global".lockdown``): the loader fetches
    # them for every request, as the snapshot holds them.
    literals: tuple[Uid, ...] = ()
    # How many entity-reference hops the policies can follow (``resource.owner.boss.x``: 3); None
    # when unknown (the loader then follows references as deep as parents).
    ref_hops: int | None = None


@dataclass(frozen=True, slots=True)
class StoreState:
    name: str
    revision: int
    active_version: int | None
    compiled: CompiledText
    entities_version: int
    # Whose attribute wins when a request's ``properties`` name one the stored entity holds
    # (``stores.PRECEDENCES``); changing it bumps the revision, so a state never mixes the two.
    attribute_precedence: str = "request"
    # Why the active version cannot be served (then ``index`` is empty and ``get`` answers 503).
    problem: str | None = None

    @property
    def index(self) -> PolicyIndex:
        return self.compiled.index

    @property
    def schema(self) -> Schema | None:
        return self.compiled.schema

    @property
    def schema_actions(self) -> dict[Uid, tuple[Uid, ...]] | None:
        return self.compiled.schema_actions

    @property
    def literals(self) -> tuple[Uid, ...]:
        return self.compiled.literals

    @property
    def ref_hops(self) -> int | None:
        return self.compiled.ref_hops


def is_current(snap: Snapshot | None, state: StoreState) -> TypeGuard[Snapshot]:
    """Whether ``snap`` holds exactly the entities ``state`` is at: the same ``entities_version``,
    and the same revision (the schema decides how entities parse)."""
    return snap is not None and snap.revision == state.revision and snap.entities_version == state.entities_version


@dataclass(frozen=True, slots=True)
class SnapshotView:
    entities: int
    entities_version: int
    current: bool


@dataclass(frozen=True, slots=True)
class StoreView:
    """What this process serves for one store (the admin store view's ``process``, and /metrics)."""

    loaded_revision: int | None
    unservable: str | None
    policies: int | None
    snapshot: SnapshotView | None


@dataclass(frozen=True, slots=True)
class Compiled:
    """A state an admin write compiled to check ``text`` under a schema: ``reload`` serves it
    instead of compiling the same text again (a 10,000-policy store compiles for seconds)."""

    schema: tuple[str | None, str | None]  # (text, format)
    text: str
    state: StoreState


@dataclass(frozen=True, slots=True)
class IndexSettings:
    enabled: bool = True
    cache_keys: int = DEFAULT_CACHE_KEYS
    min_policies: int = DEFAULT_MIN_POLICIES
    warm_keys: int = 2048  # hottest keys of the previous version compiled before a new one serves
    warm_seconds: float = 2.0  # at most this long per activation (the rest compile on first use)


def compile_text(
    text: str,
    schema_text: str | None,
    schema_format: str | None,
    *,
    index: IndexSettings,
    hot_keys: Sequence[Key] = (),
) -> CompiledText:
    """Compile (CPU-bound: run it in a worker thread). ``hot_keys`` (the previous version's most
    used request keys) are compiled before the result is returned, i.e. before it serves."""
    schema = parse_schema(schema_text, schema_format or "cedar") if schema_text else None
    policy_index = PolicyIndex(
        parse_policies(text),
        text,
        enabled=index.enabled,
        cache_keys=index.cache_keys,
        min_policies=index.min_policies,
    )
    if hot_keys:
        policy_index.warm(hot_keys, budget_seconds=index.warm_seconds)
    facts = condition_facts(text, split_confirmed=policy_index.split_confirmed)
    return CompiledText(
        index=policy_index,
        schema=schema,
        schema_actions=schema_action_parents(schema) if schema is not None else None,
        literals=facts.literals,
        ref_hops=facts.ref_hops,
    )


def state_of(row: stores.StoreRow, compiled: CompiledText) -> StoreState:
    """The state of the store ``row`` describes, serving ``compiled`` (its active text)."""
    return StoreState(
        name=row.name,
        revision=row.revision,
        active_version=row.active_version,
        compiled=compiled,
        entities_version=row.entities_version,
        attribute_precedence=row.attribute_precedence,
    )


def compile_state(
    row: stores.StoreRow,
    text: str,
    *,
    index_enabled: bool = True,
    index: IndexSettings | None = None,
    hot_keys: Sequence[Key] = (),
) -> StoreState:
    """A state compiled for this store alone (unshared); CPU-bound: run it in a worker thread."""
    settings = index or IndexSettings(enabled=index_enabled)
    return state_of(row, compile_text(text, row.schema_text, row.schema_format, index=settings, hot_keys=hot_keys))
