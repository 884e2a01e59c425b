"""Cedar ends a line comment at ``\\r`` as well as ``\\n``: every expression that reads policy text
without the engine must agree, or code Cedar compiles is invisible to it. The bypass this pins: a
forbid after ``//\\r`` was part of the previous statement for the scope index, which then never
evaluated it (allowed; Cedar: denied)."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.policy import cedar
from meshauth.policy.cedar_syntax import statements
from meshauth.policy.conditions import condition_literals
from meshauth.policy.schema_depth import cedar_schema_depth
from meshauth.policy.source_limits import Limits, limit_errors
from tests.policy.conftest import ask, decide, push

# ``A``: one statement to a reader that runs comments to "\n", two policies to Cedar (a hidden forbid).
# ``B``: two statements to that reader, one policy to Cedar — so the counts agree and the index is on.
HIDDEN_FORBID = (
    'permit(principal, action == Action::"noop", resource) //\r; '
    'forbid(principal, action, resource == Doc::"secret") //\n;\n'
)
COUNTERWEIGHT = (
    'permit(principal, action == Action::"noop2", resource) when { "a" == //\r"\n; '
    'permit(principal, action, resource is Zz) when { "//"\n };\n'
)
FILLER = "".join(f'permit(principal == User::"u{n}", action == Action::"read", resource);\n' for n in range(60))
TEXT = (
    HIDDEN_FORBID + COUNTERWEIGHT + FILLER + 'permit(principal == User::"alice", action == Action::"read", resource);\n'
)


def cedar_answer(text: str, request: tuple[cedar.Uid, cedar.Uid, cedar.Uid]) -> tuple[bool, list[str]]:
    (result,) = cedar.authorize(
        [cedar.request(*request, None)], cedar.parse_policies(text), cedar.parse_entities("[]", None), None
    )
    return result.decision == "Allow", result.diagnostics.reason


def test_statements_are_counted_as_cedar_counts_them() -> None:
    assert len(statements(TEXT)) == len(cedar.parse_policies(TEXT)) == 64
    assert len(statements(HIDDEN_FORBID)) == 2
    assert len(statements(COUNTERWEIGHT)) == 1


async def test_a_forbid_after_a_comment_ended_by_cr_applies(client: httpx.AsyncClient) -> None:
    await push(client, TEXT)
    alice_reads_secret = (("User", "alice"), ("Action", "read"), ("Doc", "secret"))
    assert cedar_answer(TEXT, alice_reads_secret) == (False, ["policy1"])
    answer: dict[str, Any] = await decide(client, ask("User::alice", "read", "Doc::secret"))
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["policy1"]
    assert (await decide(client, ask("User::alice", "read", "Doc::d1")))["decision"] is True


def test_literals_and_limits_see_code_after_a_cr_comment() -> None:
    """The entity loader's literal uids and the nesting guard read the same code Cedar compiles."""
    text = 'forbid(principal, action, resource) when { // note\rresource in Folder::"locked" };'
    assert ("Folder", "locked") in condition_literals(text)
    deep = "permit(principal, action, resource) when { //\r" + "(" * 40 + "true" + ")" * 40 + " };"
    assert limit_errors(deep, Limits(max_nesting=32, max_expression=400))


_PIECE = st.sampled_from(
    [
        'permit(principal, action == Action::"a", resource);',
        'forbid(principal, action, resource == Doc::"x");',
        "permit(principal, action, resource is Doc);",
        "//",
        "// c",
        "\r",
        "\n",
        "\r\n",
        " ",
        '"',
        ";",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECE, max_size=12))
def test_statement_split_matches_cedar_whenever_cedar_compiles(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        compiled = cedar.parse_policies(text)
    except ValueError:
        return
    assert len(statements(text)) == len(compiled), repr(text)


def test_schema_depth_sees_nesting_after_a_cr_comment() -> None:
    """Cedar's schema lexer ends comments at ``\\r`` too: nesting there is nesting the guard counts."""
    nested = "entity A { a: " + "Set<" * 10 + "Long" + ">" * 10 + " };"
    assert cedar_schema_depth(nested) == cedar_schema_depth("// note\r" + nested) > 10
    cedar.parse_schema("// note\r" + nested, "cedar")  # Cedar compiles what follows the \r
