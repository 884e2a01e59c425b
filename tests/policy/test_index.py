"""The scope index: which policies each scope can match, and — property-tested — that evaluating
only those gives exactly the answers of the whole set (decision, determining policies, errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauth.policy import cedar
from meshauth.policy.cedar import Uid
from meshauth.policy.index import PolicyIndex, Subset
from meshauth.policy.scopes import ANYTHING, ask_cedar


def index_of(text: str, **kw: Any) -> PolicyIndex:
    return PolicyIndex(cedar.parse_policies(text), text, min_policies=0, **kw)


def ids(subset: Subset) -> list[str]:
    return sorted(subset.store_id(f"policy{n}") for n in range(len(subset.policies)))


def test_policy_nothing_can_analyse_matches_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """When neither the text nor Cedar's JSON form can be read, the policy is in every subset."""
    import meshauth.policy.scopes as scopes_module

    def refuse(_text: str) -> str:
        raise ValueError("no")

    monkeypatch.setattr(scopes_module, "read_head", lambda pid, text: None)
    monkeypatch.setattr(scopes_module, "policies_json", refuse)
    index = index_of('permit(principal, action == Action::"a", resource is Doc);\npermit(principal, action, resource);')
    assert index.unanalysed == 2
    assert ask_cedar("policy0", "x").scope is ANYTHING
    assert ids(index.policies_for(("Action", "zzz"), frozenset(), "User", "Img")) == ["policy0", "policy1"]


def test_index_picks_matching_subset() -> None:
    """A request is evaluated against the policies whose scope can match it, not the others."""
    text = "\n".join(
        [
            'permit(principal, action == Action::"view", resource is Doc);',
            'permit(principal, action == Action::"edit", resource is Doc);',
            "permit(principal, action, resource is Img);",
            "forbid(principal, action, resource);",
        ]
    )
    subset = index_of(text).policies_for(("Action", "view"), frozenset(), "User", "Doc")
    assert ids(subset) == ["policy0", "policy3"]


def test_index_uses_action_ancestors() -> None:
    """``action in Action::"read"`` is picked for an action whose ancestors include read."""
    index = index_of('permit(principal, action in Action::"read", resource);')
    hit = index.policies_for(("Action", "view"), frozenset({("Action", "read")}), "User", "Doc")
    miss = index.policies_for(("Action", "view"), frozenset(), "User", "Doc")
    assert (len(hit.policies), len(miss.policies)) == (1, 0)


def test_disabled_index_returns_full_set() -> None:
    """With the index off every request sees the whole set (to measure what the index buys)."""
    full = cedar.parse_policies('permit(principal, action == Action::"a", resource);')
    index = PolicyIndex(full, 'permit(principal, action == Action::"a", resource);', enabled=False)
    assert index.policies_for(("Action", "zzz"), frozenset(), "User", "Doc").policies is full


def test_small_store_is_evaluated_whole() -> None:
    """Below ``min_policies`` no subsets are compiled: a few policies cost less than a compile."""
    text = 'permit(principal, action == Action::"a", resource);'
    index = PolicyIndex(cedar.parse_policies(text), text, min_policies=2)
    assert index.policies_for(("Action", "zzz"), frozenset(), "User", "Doc") is index.whole


def test_subsets_are_cached() -> None:
    """The same key returns the same compiled subset (compiled once per revision)."""
    index = index_of('permit(principal, action == Action::"a", resource);')
    one = index.policies_for(("Action", "a"), frozenset(), "User", "Doc")
    assert index.policies_for(("Action", "a"), frozenset(), "User", "Doc") is one


def test_cache_is_a_bounded_lru_not_cleared() -> None:
    """Past its bound the cache drops the least recently used key only; hot keys stay."""
    text = 'permit(principal, action == Action::"a0", resource);\npermit(principal, action, resource);'
    index = index_of(text, cache_keys=3)
    keys: list[tuple[Uid, frozenset[Uid], str, str]] = [(("Action", "a0"), frozenset(), t, "Doc") for t in "ABCD"]
    first = index.policies_for(*keys[0])
    index.policies_for(*keys[1])
    index.policies_for(*keys[2])
    assert index.policies_for(*keys[0]) is first  # now most recent
    index.policies_for(*keys[3])  # evicts keys[1], the least recently used
    assert index.hot_keys(10) == [keys[3], keys[0], keys[2]]


def test_cache_bound_adapts_to_the_store() -> None:
    """A store with more policies than the setting keeps one key per policy."""
    text = "\n".join(f'permit(principal, action == Action::"a{n}", resource);' for n in range(8))
    index = index_of(text, cache_keys=3)
    for n in range(8):
        index.policies_for(("Action", f"a{n}"), frozenset(), "User", "Doc")
    assert len(index.hot_keys(100)) == 8


def test_lookup_cost_does_not_scan_the_store() -> None:
    """A lookup touches only its buckets: 10,000 policies, and a key that matches one of them."""
    text = "\n".join(
        f'permit(principal, action == Action::"a{n % 20}", resource is R{n // 20});' for n in range(10_000)
    )
    index = index_of(text)
    assert index.matching(("Action", "a3"), frozenset(), "User", "R7") == (143,)
    assert index.unanalysed == 0


def test_warm_compiles_hot_keys_ahead() -> None:
    """Keys warmed at activation are served from the cache on their first request."""
    text = "\n".join(f'permit(principal, action == Action::"a{n}", resource);' for n in range(4))
    old = index_of(text)
    old.policies_for(("Action", "a1"), frozenset(), "User", "Doc")
    new = index_of(text)
    assert new.warm(old.hot_keys(10), budget_seconds=5.0) == 1
    assert new.hot_keys(10) == [(("Action", "a1"), frozenset(), "User", "Doc")]


# --- equivalence property -------------------------------------------------------------------------

USERS = [("User", f"u{i}") for i in range(4)] + [("App::User", "x"), ("Group", "g0")]
GROUPS = [("Group", f"g{i}") for i in range(3)]
DOCS = [("Doc", f"d{i}") for i in range(3)] + [("Folder", "f0"), ("App::Doc", "y"), ("Img", "i0"), ("Video", "v0")]
FOLDERS = [("Folder", f"f{i}") for i in range(2)]
ACTIONS = [("Action", f"a{i}") for i in range(4)] + [("App::Action", "a0"), ("Action", 'q"t')]
# Action groups, nested: read and write are in all.
GROUP_ACTIONS = [("Action", "read"), ("Action", "write"), ("Action", "all")]
RESOURCE_TYPES = ["Doc", "Folder", "App::Doc", "Img", "Video"]


def lit(uid: tuple[str, str]) -> str:
    escaped = uid[1].replace('"', '\\"')
    return f'{uid[0]}::"{escaped}"'


principal_scope = st.one_of(
    st.just("principal"),
    st.sampled_from(USERS).map(lambda u: f"principal == {lit(u)}"),
    st.sampled_from(GROUPS).map(lambda g: f"principal in {lit(g)}"),
    st.sampled_from(["User", "App::User", "Group"]).map(lambda t: f"principal is {t}"),
    st.sampled_from(GROUPS).map(lambda g: f"principal is User in {lit(g)}"),
)
resource_scope = st.one_of(
    st.just("resource"),
    st.sampled_from(DOCS).map(lambda d: f"resource == {lit(d)}"),
    st.sampled_from(FOLDERS).map(lambda f: f"resource in {lit(f)}"),
    st.sampled_from(RESOURCE_TYPES).map(lambda t: f"resource is {t}"),
    st.sampled_from(FOLDERS).map(lambda f: f"resource is Doc in {lit(f)}"),
    st.sampled_from(RESOURCE_TYPES).map(lambda t: f'resource is {t} in Folder::"f0"'),
)
action_scope = st.one_of(
    st.just("action"),
    st.sampled_from(ACTIONS + GROUP_ACTIONS).map(lambda a: f"action == {lit(a)}"),
    st.sampled_from(ACTIONS + GROUP_ACTIONS).map(lambda a: f"action in {lit(a)}"),
    st.lists(st.sampled_from(ACTIONS + GROUP_ACTIONS), min_size=1, max_size=3).map(
        lambda xs: "action in [" + ", ".join(lit(a) for a in xs) + "]"
    ),
)
condition = st.sampled_from(
    [
        "",
        " when { context.n > 2 };",
        " unless { principal.level < 3 };",  # errors when level is missing
        " when { resource has owner && resource.owner == principal };",
        ' when { principal in Group::"g1" || context.n == 0 };',
        ' when { decimal("1.0", "2", "3") == decimal("1.0") };',  # Cedar accepts; errors when evaluated
        ' when { context.n == 1 && ip("10.0.0.1", 5).isIpv4() };',
    ]
)
layout = st.sampled_from(["", " ", "\n  ", " // c, (x);\n"])
policy_text = st.builds(
    lambda eff, p, a, r, c, name, w: (
        (f'@id("{name}")\n' if name else "") + f"{eff}({w}{p},{w}{a}{w}, {r}{w})" + (c or ";")
    ),
    st.sampled_from(["permit", "permit", "forbid"]),
    principal_scope,
    action_scope,
    resource_scope,
    condition,
    st.one_of(
        st.none(), st.text('abc"\\', min_size=1, max_size=3).map(lambda t: t.replace("\\", "\\\\").replace('"', '\\"'))
    ),
    layout,
)
template_text = st.sampled_from(
    [
        "permit(principal == ?principal, action, resource);",
        'forbid(principal, action == Action::"a0", resource in ?resource);',
    ]
)
statement = st.one_of(policy_text, policy_text, policy_text, template_text)


def _entities(draw: Callable[[st.SearchStrategy[Any]], Any]) -> list[dict[str, Any]]:
    def uid(u: tuple[str, str]) -> dict[str, str]:
        return {"type": u[0], "id": u[1]}

    out = []
    for u in USERS[:4]:
        attrs: dict[str, Any] = {"level": draw(st.integers(0, 5))} if draw(st.booleans()) else {}
        parents = draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True))
        out.append({"uid": uid(u), "attrs": attrs, "parents": [uid(p) for p in parents]})
    out.append({"uid": uid(GROUPS[0]), "attrs": {}, "parents": [uid(GROUPS[1])]})
    for d in DOCS[:3]:
        attrs = {"owner": {"__entity": uid(draw(st.sampled_from(USERS)))}} if draw(st.booleans()) else {}
        parents = draw(st.lists(st.sampled_from(FOLDERS), max_size=1))
        out.append({"uid": uid(d), "attrs": attrs, "parents": [uid(p) for p in parents]})
    out.append({"uid": uid(FOLDERS[0]), "attrs": {}, "parents": [uid(FOLDERS[1])]})
    for a in [*ACTIONS[:4], ACTIONS[5]]:
        parents = draw(st.lists(st.sampled_from(GROUP_ACTIONS), max_size=2, unique=True))
        out.append({"uid": uid(a), "attrs": {}, "parents": [uid(p) for p in parents]})
    for g in GROUP_ACTIONS[:2]:
        out.append({"uid": uid(g), "attrs": {}, "parents": [uid(GROUP_ACTIONS[2])]})
    return out


def _ancestors(uid: tuple[str, str], entities: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    parents = {(e["uid"]["type"], e["uid"]["id"]): [(p["type"], p["id"]) for p in e["parents"]] for e in entities}
    seen: set[tuple[str, str]] = set()
    stack = list(parents.get(uid, []))
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(parents.get(p, []))
    return frozenset(seen)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(statement, min_size=0, max_size=14),
    cache_keys=st.sampled_from([2, 1000]),
    data=st.data(),
)
def test_index_is_equivalent_to_the_whole_set(policies: list[str], cache_keys: int, data: st.DataObject) -> None:
    """For any policies (many types, nested action groups, ``in`` scopes, wildcards, templates,
    comments, escaped ids, policies Cedar cannot convert), entities and requests: the indexed
    subset answers exactly as the full set — decision, determining policies and errors, in the
    store's ids."""
    text = "\n".join(policies)
    full = cedar.parse_policies(text)
    index = PolicyIndex(full, text, min_policies=0, cache_keys=cache_keys)
    assert index.enabled
    # What the text gave for display and fail-closed checks equals what Cedar's JSON form says.
    assert index.annotations == cedar.id_annotations(text)
    est = json.loads(cedar.policies_json(text))
    both = {**est["staticPolicies"], **est["templates"]}
    assert index.forbids == {pid for pid, p in both.items() if p["effect"] == "forbid"}
    entities = _entities(data.draw)
    handle = cedar.parse_entities(json.dumps(entities), None)
    requests = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(USERS),
                st.sampled_from(ACTIONS + GROUP_ACTIONS),
                st.sampled_from(DOCS),
                st.integers(0, 3),
            ),
            min_size=1,
            max_size=8,
        )
    )
    for principal, action, resource, n in requests:
        req = cedar.request(principal, action, resource, {"n": n})
        subset = index.policies_for(action, _ancestors(action, entities), principal[0], resource[0])
        (want,) = cedar.authorize([req], full, handle, None)
        (got,) = cedar.authorize([req], subset.policies, handle, None)
        assert got.decision == want.decision, (text, principal, action, resource)
        assert sorted(subset.store_id(p) for p in got.diagnostics.reason) == sorted(want.diagnostics.reason)
        assert sorted(subset.store_error(e) for e in got.diagnostics.errors) == sorted(want.diagnostics.errors)


def test_split_disagreeing_with_cedar_evaluates_whole_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the statement split ever disagreed with Cedar's numbering, the index would name the
    wrong policies: it then switches itself off and asks Cedar for ids and effects instead."""

    import meshauth.policy.scopes as scopes_module

    text = '@id("a") permit(principal, action == Action::"a", resource);\nforbid(principal, action, resource);'
    monkeypatch.setattr(scopes_module, "statements", lambda _text: ["permit(principal, action, resource);"])
    index = index_of(text)
    assert not index.enabled
    assert index.policies_for(("Action", "zzz"), frozenset(), "User", "Doc") is index.whole
    assert (index.annotations, index.forbids) == ({"policy0": "a"}, frozenset({"policy1"}))


def test_subset_error_names_the_store_id_only_at_the_start() -> None:
    """A subset's error message names its policy by the store's id; a ``policyN`` quoted later in
    the message (an entity id) is left as written."""
    subset = Subset(cedar.parse_policies("permit(principal, action, resource);"), ("policy7",))
    message = 'error while evaluating policy `policy0`: entity `User::"policy0"` does not exist'
    assert (
        subset.store_error(message)
        == 'error while evaluating policy `policy7`: entity `User::"policy0"` does not exist'
    )
    assert subset.store_error("some other error") == "some other error"
    assert Subset(subset.policies).store_error(message) == message  # the whole set: ids are the store's
