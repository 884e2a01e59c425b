"""What a store's conditions reach: the entity literals they name and the reference depth."""

from __future__ import annotations

from meshauth.policy import cedar
from meshauth.policy.conditions import condition_facts, condition_literals
from meshauth.policy.index import PolicyIndex
from meshauth.policy.state import IndexSettings, compile_text


def ref_hops(text: str) -> int | None:
    return condition_facts(text).ref_hops


def test_condition_literals_from_text_skip_scopes_strings_and_comments() -> None:
    """The text fallback names the same literals as Cedar's JSON form for ordinary policies."""
    text = """
    forbid(principal in Group::"g", action == Action::"v", resource)
        when { Config::"global".lockdown && context.s == "Fake::\\"x\\"" } // Not::"this"
        unless { [Team::"t"].contains(principal) };
    permit(principal == User::"alice", action, resource);
    """
    assert set(condition_literals(text)) == {("Config", "global"), ("Team", "t")}


def test_condition_literals_are_the_entities_conditions_name() -> None:
    """Entities named in conditions are loader roots; scope uids and uid-like strings are not."""
    text = """
    forbid(principal in Group::"g", action == Action::"v", resource)
        when { Config::"global".lockdown && context.s == "Fake::\\"x\\"" }
        unless { [Team::"t"].contains(principal) };
    permit(principal == User::"alice", action, resource);
    """
    assert set(condition_literals(text)) == {("Config", "global"), ("Team", "t")}
    assert condition_literals("") == ()


def test_ref_hops_is_the_longest_access_chain() -> None:
    """The loader's reference depth comes from the conditions' longest attribute/tag access chain."""
    assert ref_hops("permit(principal, action, resource);") == 0
    assert ref_hops("forbid(principal, action, resource) when { resource.owner.manager.suspended };") == 3
    assert ref_hops('permit(principal, action, resource) when { resource.getTag("t") has x };') == 2


def test_condition_analysis_never_refuses_what_cedar_accepts() -> None:
    """Policies Cedar accepts but cannot convert to its typed nodes, escaped literal ids and deep
    nesting: literals and the reference bound are still found, nothing raises (issue 7 item 4)."""
    text = (
        'permit(principal, action, resource) when { decimal("1", "2", "3") == decimal("1.0") };\n'
        'forbid(principal, action, resource) when { Config::"a\\"b".lockdown && resource.owner.boss.x };\n'
        "permit(principal, action, resource) when { " + "(" * 90 + "principal.level > 1" + ")" * 90 + " };"
    )
    facts = condition_facts(text)
    assert facts.literals == (("Config", 'a"b'),)
    assert facts.ref_hops == 4  # .lockdown, .owner, .boss, .x in one statement: a bound on its chains


def test_reference_bound_ignores_method_calls_and_strings() -> None:
    """``.contains(…)`` and text inside strings are not accesses."""
    text = 'permit(principal, action, resource) when { [1].contains(2) && context.s == "a.b.c" };'
    assert ref_hops(text) == 2  # ``[`` (counted: a set literal or an index) and ``.s``


# A ``\n``-only reader cut this as one statement (the forbid inside the permit's comment), stop 20.
HIDDEN = (
    'permit(principal, action, resource) //\r; forbid(principal, action, resource) when { Config::"g" has lockdown };\n'
    'permit(principal, action, resource) when { Team::"t" has x };'
)


def test_an_unconfirmed_split_takes_the_literals_from_cedar() -> None:
    """Where Cedar did not confirm the split, the literals are Cedar's (a literal the split misplaced
    would go unloaded, and ``has`` on an unloaded entity is false without an error: a forbid that
    silently does not apply) and the reference depth is unbounded."""
    facts = condition_facts(HIDDEN, split_confirmed=False)
    assert set(facts.literals) == {("Config", "g"), ("Team", "t")}
    assert facts.ref_hops is None
    assert set(condition_facts(HIDDEN).literals) == {("Config", "g"), ("Team", "t")}  # confirmed: the text's


def test_the_index_says_whether_cedar_confirmed_the_split() -> None:
    """``PolicyIndex.split_confirmed`` (what compile_text passes on) is false when the statements read
    are not Cedar's policies."""
    full = cedar.parse_policies(HIDDEN)
    assert PolicyIndex(full, HIDDEN).split_confirmed
    assert not PolicyIndex(full, HIDDEN.replace("//\r;", "//\n;") + "\n;").split_confirmed
    compiled = compile_text(HIDDEN, None, None, index=IndexSettings())
    assert set(compiled.literals) == {("Config", "g"), ("Team", "t")}
