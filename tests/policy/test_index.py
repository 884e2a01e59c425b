"""The scope index: which policies each scope can match, and — property-tested — that evaluating
only those gives exactly the answers of the whole set (decision, determining policies, errors)."""

from __future__ import annotations

import json
from typing import Any

from cedarpy import pst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauth.policy import cedar
from meshauth.policy.index import PolicyIndex, Scope, scope_of


def only(text: str) -> pst.Template:
    (policy,) = cedar.parse_policies(text).to_pst().static_policies.values()
    return policy


def test_scope_of_equality_constraints() -> None:
    """``==`` fixes the action and the entity types."""
    s = scope_of(only('permit(principal == User::"a", action == Action::"v", resource == App::Doc::"d");'))
    assert s == Scope(("Action", "v"), None, "User", "App::Doc")


def test_scope_of_is_and_is_in() -> None:
    """``is T`` and ``is T in E`` fix the type."""
    s = scope_of(only('permit(principal is User, action, resource is Doc in Folder::"f");'))
    assert (s.principal_type, s.resource_type, s.action_eq, s.action_in) == ("User", "Doc", None, None)


def test_scope_of_in_does_not_fix_type() -> None:
    """``in E`` leaves the type open: any type may descend from E."""
    s = scope_of(only('permit(principal in Group::"g", action in [Action::"a", Action::"b"], resource);'))
    assert s.principal_type is None
    assert s.action_in == frozenset({("Action", "a"), ("Action", "b")})


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
    index = PolicyIndex(cedar.parse_policies(text))
    subset = index.policies_for(("Action", "view"), frozenset(), "User", "Doc")
    assert sorted(subset.to_pst().static_policies) == ["policy0", "policy3"]


def test_index_uses_action_ancestors() -> None:
    """``action in Action::"read"`` is picked for an action whose ancestors include read."""
    index = PolicyIndex(cedar.parse_policies('permit(principal, action in Action::"read", resource);'))
    hit = index.policies_for(("Action", "view"), frozenset({("Action", "read")}), "User", "Doc")
    miss = index.policies_for(("Action", "view"), frozenset(), "User", "Doc")
    assert (len(hit), len(miss)) == (1, 0)


def test_disabled_index_returns_full_set() -> None:
    """With the index off every request sees the whole set (to measure what the index buys)."""
    full = cedar.parse_policies('permit(principal, action == Action::"a", resource);')
    index = PolicyIndex(full, enabled=False)
    assert index.policies_for(("Action", "zzz"), frozenset(), "User", "Doc") is full


def test_subsets_are_cached() -> None:
    """The same key returns the same compiled subset (compiled once per revision)."""
    index = PolicyIndex(cedar.parse_policies('permit(principal, action == Action::"a", resource);'))
    one = index.policies_for(("Action", "a"), frozenset(), "User", "Doc")
    assert index.policies_for(("Action", "a"), frozenset(), "User", "Doc") is one


# --- equivalence property -------------------------------------------------------------------------

USERS = [("User", f"u{i}") for i in range(4)] + [("App::User", "x"), ("Group", "g0")]
GROUPS = [("Group", f"g{i}") for i in range(3)]
DOCS = [("Doc", f"d{i}") for i in range(3)] + [("Folder", "f0"), ("App::Doc", "y")]
FOLDERS = [("Folder", f"f{i}") for i in range(2)]
ACTIONS = [("Action", f"a{i}") for i in range(4)] + [("App::Action", "a0")]
GROUP_ACTIONS = [("Action", "read"), ("Action", "write")]


def lit(uid: tuple[str, str]) -> str:
    return f'{uid[0]}::"{uid[1]}"'


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
    st.sampled_from(["Doc", "Folder", "App::Doc"]).map(lambda t: f"resource is {t}"),
    st.sampled_from(FOLDERS).map(lambda f: f"resource is Doc in {lit(f)}"),
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
    ]
)
policy_text = st.builds(
    lambda eff, p, a, r, c, name: (f'@id("{name}")\n' if name else "") + f"{eff}({p}, {a}, {r})" + (c or ";"),
    st.sampled_from(["permit", "permit", "forbid"]),
    principal_scope,
    action_scope,
    resource_scope,
    condition,
    st.one_of(st.none(), st.text("abc", min_size=1, max_size=3)),
)


def _entities(draw: st.DrawFn) -> list[dict[str, Any]]:
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
    for a in ACTIONS[:4]:
        parents = draw(st.lists(st.sampled_from(GROUP_ACTIONS), max_size=2, unique=True))
        out.append({"uid": uid(a), "attrs": {}, "parents": [uid(p) for p in parents]})
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policy_text, min_size=0, max_size=12),
    data=st.data(),
)
def test_index_is_equivalent_to_the_whole_set(policies: list[str], data: st.DataObject) -> None:
    """For any policies, entities and request: the indexed subset answers exactly as the full set."""
    text = "\n".join(policies)
    full = cedar.parse_policies(text)
    index = PolicyIndex(full)
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
        (got,) = cedar.authorize([req], subset, handle, None)
        assert got.decision == want.decision, (text, principal, action, resource)
        assert sorted(got.diagnostics.reason) == sorted(want.diagnostics.reason)
        assert sorted(got.diagnostics.errors) == sorted(want.diagnostics.errors)
