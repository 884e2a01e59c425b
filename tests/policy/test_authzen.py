"""AuthZEN request parsing: hostile text in a request is a 400 naming the field, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.policy.conftest import ask, push

ALLOW_ALL = "permit(principal, action, resource);"


@pytest.mark.parametrize("escape", ["\\u{FFFFFFFFFFFF}", "\\u{110000}", "\\u{D800}", "\\u{DFFF}"])
async def test_action_escape_outside_unicode_is_a_400(client: httpx.AsyncClient, escape: str) -> None:
    """A ``\\u{…}`` escape in a Cedar-uid action name that is no Unicode scalar value is a 400."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluation", json=ask("User::a", f'App::Action::"{escape}"', "Doc::d"))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "action.name"


async def test_action_escape_of_a_valid_code_point_still_works(client: httpx.AsyncClient) -> None:
    """The largest scalar value is still accepted."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluation", json=ask("User::a", 'App::Action::"\\u{10FFFF}"', "Doc::d"))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] is True


async def test_hostile_action_fails_only_its_batch_item(client: httpx.AsyncClient) -> None:
    """In a batch, an action escape that overflows or names a surrogate fails its item alone (400)."""
    await push(client, ALLOW_ALL)
    body = {
        "subject": {"type": "User", "id": "a"},
        "resource": {"type": "Doc", "id": "d"},
        "evaluations": [
            {"action": {"name": "view"}},
            {"action": {"name": 'App::Action::"\\u{FFFFFFFFFFFF}"'}},
            {"action": {"name": 'App::Action::"\\u{D800}"'}},
            {"action": {"name": "view"}},
        ],
    }
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["evaluations"]
    assert out[0]["decision"] is True
    assert out[3]["decision"] is True
    for n in (1, 2):
        assert out[n]["decision"] is False
        assert out[n]["context"]["error"]["status"] == 400
    assert out[1]["context"]["error"]["message"].startswith("evaluations[1].action.name")
    assert out[2]["context"]["error"]["message"].startswith("evaluations[2].action.name")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/access/v1/evaluation", "/access/v1/evaluations"])
async def test_json_nested_past_the_recursion_limit_is_a_400(client: httpx.AsyncClient, path: str) -> None:
    """A body nested deeper than the decoder can follow is a 400 on ``body``, not a 500."""
    await push(client, ALLOW_ALL)
    body = (
        b'{"subject":{"type":"User","id":"a"},"action":{"name":"v"},"resource":{"type":"Doc","id":"d"},"context":{"x":'
    )
    r = await client.post(path, content=body + _deep(100_000) + b"}}", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body"
