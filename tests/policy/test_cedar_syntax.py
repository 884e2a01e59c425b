"""The text reader's expressions on layout that once made them backtrack: what they read is Cedar's."""

from __future__ import annotations

from meshauth.policy import cedar
from meshauth.policy.cedar_syntax import HEAD, statements
from meshauth.policy.conditions import condition_facts

RUN = "/" * 40  # 2^20 ways to split into comments: seconds per match when comments could end early


def test_a_comment_run_after_a_word_is_one_comment() -> None:
    """``////…`` after a word is one comment to the end of its line, in the head and in conditions:
    literals and accesses after it are still found, and Cedar compiles the same text."""
    text = (
        f"forbid(principal {RUN}\n, action, resource) when {{ true {RUN}\n"
        f'&& Config::"g" {RUN}\n has lockdown && context {RUN}\n. x }};'
    )
    assert len(cedar.parse_policies(text)) == 1
    (stmt,) = statements(text)
    assert HEAD.match(stmt) is not None
    facts = condition_facts(text)
    assert facts.literals == (("Config", "g"),)
    assert facts.ref_hops == 2  # ``has`` and ``.x``


def test_layout_after_the_last_statement_is_no_statement() -> None:
    """Blanks and comments after the last ``;`` (a comment may hold ``;`` and whole policies) add
    nothing, however long."""
    text = "permit(principal, action, resource);" + " \n\t" * 50_000 + "// forbid(principal, action, resource);\r\n "
    assert statements(text) == ["permit(principal, action, resource);"]
    assert len(cedar.parse_policies(text)) == 1
    assert statements("") == [] and statements(" // x;\n") == []


def test_a_long_type_path_is_read_once() -> None:
    """``resource is A::A::…`` (valid Cedar, and the upload limits count no operator in it): each
    name of the path was a fresh start for the literal search, which then scanned the rest of the
    path — 16,000 names took 32 s. 200,000 names now read like any text; literals after it are found."""
    path = "::".join(["A"] * 200_000)
    text = f'forbid(principal, action, resource is {path}) when {{ resource is {path} && Config::"g" has x }};'
    facts = condition_facts(text)
    assert facts.literals == (("Config", "g"),)
    (stmt,) = statements(text)
    head = HEAD.match(stmt)
    assert head is not None and head["resource_is"] == path
