"""What a store's conditions reach, for the entity loader: the entity uids they name, and how many
attribute/tag accesses they chain.

Read from the text, not from Cedar's JSON form: that conversion costs ~0.2 ms per policy, which was
most of the cost of loading a small store on demand (and ~25 s for 100,000 policies). But the text
is read per statement, so only where Cedar confirmed the statement split (``scopes.confirmed_by_cedar``,
which the index runs): otherwise a literal our split misplaced would go unloaded, and an unloaded
entity makes ``Config::"g" has lockdown`` false *without an error* — a forbid that silently does not
apply, which the missing-entity check cannot see. Unconfirmed, the facts are Cedar's JSON form's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import msgspec

from meshauth.policy.cedar import Uid, policies_json
from meshauth.policy.cedar_syntax import COMMENT, HEAD, IDENT, PATH, STRING, WS, Unreadable, read_uid, statements
from meshauth.policy.entity_record import entity_refs

log = logging.getLogger(__name__)

# A whole path is matched whether or not an id follows it (``resource is A::B::C``): searching for a
# literal afresh at each of its names scanned the rest of the path each time (quadratic: a 16,000-name
# type path took 32 s, the GIL held).
_LITERAL = re.compile(rf"\b(?P<path>{PATH})(?P<id>{WS}::{WS}{STRING})?|{STRING}|{COMMENT}")
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


def condition_facts(text: str, *, split_confirmed: bool = True) -> ConditionFacts:
    """Read per statement: literals in the conditions (a literal inside a string or comment is
    skipped; one the expression cannot decode is taken from Cedar's form of that statement), and
    the most accesses any one statement's conditions make — no chain in a statement is longer.
    With ``split_confirmed`` false (Cedar reads the statements otherwise), or when Cedar cannot
    convert a statement whose literal the expression cannot decode, the facts are read from Cedar's
    form of the whole text instead. Never raises for text Cedar accepts."""
    facts = _text_facts(text, strict=True) if split_confirmed else None
    return facts if facts is not None else _cedar_facts(text)


def condition_literals(text: str) -> tuple[Uid, ...]:
    return condition_facts(text).literals


def _text_facts(text: str, *, strict: bool) -> ConditionFacts | None:
    """The facts read per statement; None if ``strict`` and a statement Cedar cannot convert
    names a literal the expression cannot decode (else that literal is left out)."""
    found: dict[Uid, None] = {}
    hops = 0
    for stmt in statements(text):
        head = HEAD.match(stmt)
        body = stmt[head.end() :] if head else stmt  # unread head: its scope uids too (a superset)
        for m in _LITERAL.finditer(body):
            if m["id"] is None:
                continue
            try:
                found[read_uid(m[0])] = None
            except Unreadable:
                literals = _cedar_literals(stmt)
                if literals is None and strict:
                    return None
                found.update(dict.fromkeys(literals or ()))
        hops = max(hops, sum(1 for m in _ACCESS.finditer(body) if m["access"] is not None))
    return ConditionFacts(tuple(found), hops)


def _cedar_facts(text: str) -> ConditionFacts:
    """Every literal Cedar's form of the whole text names in conditions, with no bound on the
    reference depth (the loader then follows references as deep as parents). Should even that
    conversion fail, the text's reading is all there is: its literals, and still no bound."""
    literals = _cedar_literals(text)
    if literals is None:
        log.warning("policy conditions: Cedar cannot convert the text; entity literals read from the text alone")
        best = _text_facts(text, strict=False)
        literals = list(best.literals) if best is not None else []
    return ConditionFacts(tuple(dict.fromkeys(literals)), None)


def _cedar_literals(text: str) -> list[Uid] | None:
    try:
        tree = msgspec.json.decode(policies_json(text))
    except Exception:  # noqa: BLE001 - nothing more to learn from Cedar: the caller decides
        return None
    policies = [*tree.get("staticPolicies", {}).values(), *tree.get("templates", {}).values()]
    return entity_refs([p.get("conditions", []) for p in policies])
