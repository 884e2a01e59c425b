"""cedar.authorize: answers in order, alike answers (all but their timings) decoded once and shared."""

from __future__ import annotations

import pytest

from meshauth.policy import cedar
from meshauth.policy.cedar import _answer_key

POLICIES = """
@id("view-all") permit(principal, action == Action::"view", resource) when { true };
@id("no-mallory") forbid(principal == User::"mallory", action, resource) when { true };
"""


def req(user: str, doc: str = "d") -> dict[str, object]:
    return cedar.request(("User", user), ("Action", "view"), ("Doc", doc), None)


def test_alike_answers_share_one_result_and_each_request_gets_its_own() -> None:
    policies = cedar.parse_policies(POLICIES)
    entities = cedar.parse_entities("[]", None)
    users = ["a", "mallory", "b", "mallory", "c"]
    results = cedar.authorize([req(u, f"d{i}") for i, u in enumerate(users)], policies, entities, None)
    assert [r.decision for r in results] == ["Allow", "Deny", "Allow", "Deny", "Allow"]
    assert results[0] is results[2] is results[4] and results[1] is results[3]
    assert results[0] is not results[1]
    assert results[1].diagnostics.reason == ["policy1"] and results[0].diagnostics.reason == ["policy0"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (
            '{"decision":"Allow","diagnostics":{"reason":[]},"metrics":{"a":1,"b":2}}',
            '{"decision":"Allow","diagnostics":{"reason":[]}',
        ),
        # metrics not last, nested, or absent: the whole text (never a key that drops what Result reads)
        ('{"metrics":{"a":1},"decision":"Allow"}', '{"metrics":{"a":1},"decision":"Allow"}'),
        ('{"decision":"Deny","metrics":{"a":{"b":1}}}', '{"decision":"Deny","metrics":{"a":{"b":1}}}'),
        (
            '{"decision":"Deny","metrics":{"a":1},"diagnostics":{}}',
            '{"decision":"Deny","metrics":{"a":1},"diagnostics":{}}',
        ),
        ('{"decision":"Deny"}', '{"decision":"Deny"}'),
    ],
)
def test_answer_key_drops_only_a_final_flat_metrics_member(raw: str, key: str) -> None:
    assert _answer_key(raw) == key


def test_a_marker_inside_an_error_message_is_not_taken_for_the_metrics() -> None:
    """In JSON text the marker's quotes inside a string are escaped: the real member is the last one."""
    raw = '{"decision":"Deny","diagnostics":{"errors":["x\\",\\"metrics\\":{"]},"metrics":{"t":3}}'
    assert _answer_key(raw) == '{"decision":"Deny","diagnostics":{"errors":["x\\",\\"metrics\\":{"]}'
