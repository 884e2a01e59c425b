"""``scope_table.py``: a scope-only policy set answered without the engine, exactly as Cedar answers
it (decision and determining policies), and no table for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.policy import cedar
from meshauth.policy.scope_table import MAX_POLICIES, plain_context, table_for

PRINCIPALS = [
    "principal",
    'principal == User::"a"',
    'principal == User::"b"',
    'principal == User::"q\\"uote"',
    'principal == App::User::"a"',
    "principal is User",
    "principal is Admin",
    'principal == Admin::"a"',
]
ACTIONS = ["action", 'action == Action::"view"', 'action == Action::"edit"', 'action == App::Action::"view"']
RESOURCES = ["resource", 'resource == Doc::"d1"', 'resource == Doc::"d2"', "resource is Doc", "resource is Folder"]
REQUEST_PRINCIPALS = [
    ("User", "a"),
    ("User", "b"),
    ("User", 'q"uote'),
    ("App::User", "a"),
    ("Admin", "a"),
    ("User", "c"),
]
REQUEST_ACTIONS = [("Action", "view"), ("Action", "edit"), ("App::Action", "view"), ("Action", "other")]
REQUEST_RESOURCES = [("Doc", "d1"), ("Doc", "d2"), ("Folder", "d1"), ("Doc", "d3")]

ANNOTATION = '@id("x") '
policy = st.builds(
    lambda effect, p, a, r, annotated: f"{ANNOTATION if annotated else ''}{effect}({p}, {a}, {r});",
    st.sampled_from(["permit", "forbid"]),
    st.sampled_from(PRINCIPALS),
    st.sampled_from(ACTIONS),
    st.sampled_from(RESOURCES),
    st.booleans(),
)
request = st.tuples(
    st.sampled_from(REQUEST_PRINCIPALS), st.sampled_from(REQUEST_ACTIONS), st.sampled_from(REQUEST_RESOURCES)
)
NO_ENTITIES = cedar.parse_entities("[]", None)


@settings(max_examples=300, deadline=None)
@given(st.lists(policy, max_size=8), st.lists(request, min_size=1, max_size=12))
def test_the_table_answers_as_the_engine(policies: list[str], requests: list[tuple[cedar.Uid, ...]]) -> None:
    text = "\n".join(policies)
    compiled = cedar.parse_policies(text)
    table = table_for(text, len(compiled))
    assert table is not None
    engine = cedar.authorize([cedar.request(p, a, r, None) for p, a, r in requests], compiled, NO_ENTITIES, None)
    for (p, a, r), result in zip(requests, engine, strict=True):
        allowed, reasons = table.decide(p, a, r)
        assert result.diagnostics.errors == []
        assert (result.decision, sorted(result.diagnostics.reason)) == ("Allow" if allowed else "Deny", sorted(reasons))


context_value = st.one_of(
    st.text(max_size=4),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(min_value=0, max_value=3), max_size=2),
    # Lists as the gate sends ``scope``, mixed, nested, and with what Cedar refuses inside.
    st.lists(st.text(max_size=3), max_size=3),
    st.lists(
        st.one_of(
            st.text(max_size=2),
            st.booleans(),
            st.integers(min_value=-(2**64), max_value=2**64),
            st.floats(allow_nan=False, allow_infinity=False),
            st.none(),
            st.lists(st.text(max_size=2), max_size=2),
            st.just({"a": 1}),
            st.just({"__extn": {"fn": "ip", "arg": "bad"}}),
            st.just({"__entity": {"type": "User", "id": "a"}}),
        ),
        max_size=3,
    ),
    st.just({"__extn": {"fn": "ip", "arg": "bad"}}),
    st.just({"__entity": {"type": "User", "id": "a"}}),
)
context = st.dictionaries(st.sampled_from(["a", "b", "__x", "__entity", "__extn", ""]), context_value, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(policy, min_size=1, max_size=4), request, context)
def test_a_plain_context_is_one_the_engine_takes_without_error(
    policies: list[str], req: tuple[cedar.Uid, ...], ctx: dict[str, object]
) -> None:
    """The table answers a query with a context only when the engine would take that context
    without an error, and then answers as the engine does."""
    text = "\n".join(policies)
    compiled = cedar.parse_policies(text)
    table = table_for(text, len(compiled))
    assert table is not None
    p, a, r = req
    (result,) = cedar.authorize([cedar.request(p, a, r, ctx or None)], compiled, NO_ENTITIES, None)
    if plain_context(ctx or None):
        allowed, reasons = table.decide(p, a, r)
        assert result.diagnostics.errors == []
        assert (result.decision, sorted(result.diagnostics.reason)) == ("Allow" if allowed else "Deny", sorted(reasons))


def test_an_empty_set_denies_naming_nothing() -> None:
    table = table_for("", 0)
    assert table is not None
    assert table.decide(("User", "a"), ("Action", "view"), ("Doc", "d")) == (False, [])


@pytest.mark.parametrize(
    "text",
    [
        "permit(principal, action, resource) when { true };",
        "permit(principal, action, resource) unless { false };",
        'permit(principal in Group::"g", action, resource);',
        'permit(principal, action, resource in Folder::"f");',
        'permit(principal is User in Group::"g", action, resource);',
        'permit(principal, action in [Action::"view"], resource);',
        'permit(principal, action in Action::"read", resource);',
        "permit(principal == ?principal, action, resource);",
        "permit(principal, action, resource);\nforbid(principal, action, resource) when { context.x == 1 };",
    ],
)
def test_anything_but_scope_alone_gets_no_table(text: str) -> None:
    """A condition, an ``in``, a template: the engine decides (its answer needs entities or context)."""
    compiled = cedar.parse_policies(text)
    assert table_for(text, len(compiled)) is None


def test_a_count_that_differs_from_the_compiled_set_gets_no_table() -> None:
    text = "permit(principal, action, resource);"
    assert table_for(text, 2) is None
    assert table_for("", 1) is None


def test_a_large_set_gets_no_table() -> None:
    text = "\n".join(f'permit(principal == User::"u{n}", action, resource);' for n in range(MAX_POLICIES + 1))
    assert table_for(text, MAX_POLICIES + 1) is None
    assert table_for(text.rsplit("\n", 1)[0], MAX_POLICIES) is not None


# Ids Cedar writes with escapes (quote, backslash, NUL, newline, non-ASCII) and types in namespaces, where an
# ``is`` or ``==`` of one namespace must not match another's: the table still answers as the engine.
ODD_IDS = ['q"u', "back\\slash", "\x00", "nl\n", "\u00e9", "\U0001f600", ""]
ODD_TYPES = ["User", "A::User", "A::B::User", "B::User", "Action", "A::Action"]


def _literal(eid: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\x00": "\\0", "\n": "\\n"}
    return '"' + "".join(escapes.get(c, c if ord(c) < 128 else f"\\u{{{ord(c):x}}}") for c in eid) + '"'


odd_uid = st.tuples(st.sampled_from(ODD_TYPES), st.sampled_from(ODD_IDS))
odd_scope = st.one_of(
    st.just(""), odd_uid.map(lambda u: f" == {u[0]}::{_literal(u[1])}"), st.sampled_from(ODD_TYPES).map(" is {}".format)
)
odd_action_uid = st.tuples(st.sampled_from(["Action", "A::Action"]), st.sampled_from(ODD_IDS))  # Cedar: an Action type
odd_action = st.one_of(st.just(""), odd_action_uid.map(lambda u: f" == {u[0]}::{_literal(u[1])}"))
odd_policy = st.builds(
    lambda effect, p, a, r: f"{effect}(principal{p}, action{a}, resource{r});",
    st.sampled_from(["permit", "forbid"]),
    odd_scope,
    odd_action,
    odd_scope,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(odd_policy, max_size=6), st.lists(st.tuples(odd_uid, odd_uid, odd_uid), min_size=1, max_size=8))
def test_escaped_ids_and_namespaced_types_answer_as_the_engine(
    policies: list[str], requests: list[tuple[cedar.Uid, ...]]
) -> None:
    text = "\n".join(policies)
    compiled = cedar.parse_policies(text)
    table = table_for(text, len(compiled))
    assert table is not None
    engine = cedar.authorize([cedar.request(p, a, r, None) for p, a, r in requests], compiled, NO_ENTITIES, None)
    for (p, a, r), result in zip(requests, engine, strict=True):
        allowed, reasons = table.decide(p, a, r)
        assert result.diagnostics.errors == []
        assert (result.decision, sorted(result.diagnostics.reason)) == ("Allow" if allowed else "Deny", sorted(reasons))
