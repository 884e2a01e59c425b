"""Each policy's scope (``principal``, ``action``, ``resource`` constraints), read from its text.

Each statement's head is read by one regular expression (``cedar_syntax.HEAD``). A head the
expression does not cover (an escaped string, an unusual layout) is converted by Cedar alone (its
JSON form); a policy neither can analyse is a wildcard and, its effect unknown, counted as a forbid
(fail closed).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from meshauth.policy.cedar import PolicySet, Uid, policies_json
from meshauth.policy.cedar_syntax import (
    HEAD,
    IDENT,
    STRING,
    UID,
    WS,
    Unreadable,
    layout_free,
    plain,
    read_uid,
    statements,
)

log = logging.getLogger(__name__)

# One annotation of the head's run of them, matched from where the last ended: searching the run for
# ``@id`` found one inside another annotation's string or a comment (``@note("@id(")``), and named the
# policy otherwise than Cedar does.
_ANNOTATION = re.compile(rf"@{WS}(?P<key>{IDENT}){WS}(?:\({WS}(?P<value>{STRING}){WS}\){WS})?")


# One member of an ``action in [...]`` list, matched from where the last ended (a search also found
# uids inside comments between members: a superset, harmless to the index, but not Cedar's reading).
_LIST_MEMBER = re.compile(rf"{WS},?{WS}(?P<uid>{UID})")


def _list_uids(members: str) -> list[Uid]:
    out, at = [], 0
    while (u := _LIST_MEMBER.match(members, at)) is not None:
        out.append(read_uid(u["uid"]))
        at = u.end()
    return out


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


def _entity_type(m: re.Match[str], var: str) -> str | None:
    if m[f"{var}_is"] is not None:
        return layout_free(m[f"{var}_is"])
    if m[f"{var}_op"] == "==" and m[f"{var}_eq"] is not None:
        return layout_free(m[f"{var}_eq"])
    return None  # any, ``in E``, or a template slot: can match any type


def read_head(pid: str, text: str) -> Policy | None:
    """The policy as read from its text, or None when the text is beyond the expression."""
    m = HEAD.match(text)
    if m is None:
        return None
    try:
        action_eq: Uid | None = None
        action_in: frozenset[Uid] | None = None
        if m["action_op"] == "==":
            action_eq = read_uid(m["action_uid"])
        elif m["action_op"] == "in":
            action_in = frozenset({read_uid(m["action_uid"])})
        elif m["action_list"] is not None:
            action_in = frozenset(_list_uids(m["action_list"]))
        annotation: str | None = None
        annotations, at = m["annotations"], 0
        while (a := _ANNOTATION.match(annotations, at)) is not None and a.end() > at:
            at = a.end()
            if a["key"] != "id":
                continue
            if a["value"] is None:
                raise Unreadable  # ``@id`` without a value: let Cedar say what it means
            annotation = plain(a["value"])
    except Unreadable:
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


def analyse(text: str) -> list[Policy]:
    return [read_head(f"policy{n}", s) or ask_cedar(f"policy{n}", s) for n, s in enumerate(statements(text))]


# A policy Cedar compiles whatever comes before it: placed right after a statement's last character
# (no layout between), it is swallowed if Cedar is still inside a line comment there.
_SENTINEL = "permit(principal, action, resource);"


def confirmed_by_cedar(policies: list[Policy]) -> bool:
    """Whether Cedar reads each statement the split cut as exactly one policy (a template exactly
    when the head reading says so) that ends where the statement ends. With the whole set's count
    equal to the number of statements, Cedar's ``policyN`` *is* the N-th statement's text: no
    divergence between this module's lexing and Cedar's can then move code between policies (the
    ``//\r`` bypass of stop 20: one statement here, two policies in Cedar, a counterweight
    elsewhere to make the counts agree). Costs one Cedar parse per statement (~0.1 ms).

    Why it ends where it ends: a statement Cedar compiles alone ends either between tokens or inside
    a line comment (strings must close; Cedar has no other comment). A line comment starts with
    ``//`` and certainly ends at ``\n``, so one still open at the end began after the last ``\n``:
    only a statement with ``//`` there is asked again, with :data:`_SENTINEL` appended (swallowed iff
    a comment is open). This textual test can only ask Cedar more often, never less."""
    for p in policies:
        try:
            alone = PolicySet.from_str(p.text)
            templates = len(alone.templates())
            if len(alone) + templates != 1 or bool(templates) != p.template:
                return False
            if "//" in p.text[p.text.rfind("\n") + 1 :]:
                both = PolicySet.from_str(p.text + _SENTINEL)
                if len(both) + len(both.templates()) != 2:
                    return False
        except ValueError:
            return False
    return True


def whole_set_facts(text: str, count: int) -> tuple[dict[str, str], set[str]]:
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
