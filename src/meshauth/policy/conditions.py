"""What a store's conditions reach, for the entity loader: the entity uids they name, and how many
attribute/tag accesses they chain.

Read from the text, not from Cedar's JSON form: that conversion costs ~0.2 ms per policy, which was
most of the cost of loading a small store on demand (and ~25 s for 100,000 policies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from meshauth.policy.cedar import Uid, policies_json
from meshauth.policy.cedar_syntax import COMMENT, HEAD, IDENT, STRING, UID, WS, Unreadable, read_uid, statements
from meshauth.policy.entity_record import entity_refs

_LITERAL = re.compile(rf"(?P<uid>\b{UID})|{STRING}|{COMMENT}")
# Attribute access (``.a`` not followed by a call), tag access (``.getTag(``, ``.hasTag(``), ``has``
# and ``[`` (indexing, or a set literal: counted too — an upper bound is all the loader needs).
_ACCESS = re.compile(
    rf"{STRING}|{COMMENT}|(?P<access>\.{WS}(?:getTag|hasTag){WS}\(|\.{WS}{IDENT}+(?!{WS}\()|\bhas\b|\[)"
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
        head = HEAD.match(stmt)
        body = stmt[head.end() :] if head else stmt  # unread head: its scope uids too (a superset)
        for m in _LITERAL.finditer(body):
            if m["uid"] is None:
                continue
            try:
                found[read_uid(m["uid"])] = None
            except Unreadable:
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
