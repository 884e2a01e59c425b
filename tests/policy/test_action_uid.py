"""An AuthZEN action name written as a full Cedar uid (``Action::"\\x64elete"``) is read exactly as
Cedar reads that literal: the escapes Cedar has (``\\xHH`` up to 0x7f, ``\\u{…}`` of 1-6 hex digits,
``\\n`` …) mean what they mean there, and what Cedar refuses (``\\q``, ``\\*``, ``\\x80``) is a 400. Read
otherwise, a forbid on ``Action::"delete"`` would not apply to a request Cedar calls that action."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from meshauth.http import ApiError
from meshauth.policy import cedar
from meshauth.policy.names import action_uid
from tests.policy.conftest import ask, decide, push

LITERALS = [
    "plain",
    "\\x41",
    "\\x7f",
    "\\x80",
    "\\xff",
    "\\x4",
    "\\q",
    "\\*",
    "\\U{41}",
    "\\u{41}",
    "\\u{000041}",
    "\\u{0000041}",
    "\\u{ 41}",
    "\\u{+41}",
    "\\u{D800}",
    "\\u{10FFFF}",
    "\\u{110000}",
    "\\0\\n\\r\\t\\\\\\'\\\"",
    "a\\x64b",
]


def cedar_reading(literal: str) -> str | None:
    """The id Cedar reads from ``Action::"<literal>"``, or None where it refuses the literal."""
    try:
        tree = msgspec.json.decode(cedar.policies_json(f'permit(principal, action == Action::"{literal}", resource);'))
    except ValueError:
        return None
    eid: str = tree["staticPolicies"]["policy0"]["action"]["entity"]["id"]
    return eid


@pytest.mark.parametrize("literal", LITERALS)
def test_a_full_action_uid_is_read_as_cedar_reads_it(literal: str) -> None:
    expected = cedar_reading(literal)
    try:
        got: str | None = action_uid("action.name", f'Action::"{literal}"')[1]
    except ApiError:
        got = None
    assert got == expected


async def test_an_escaped_action_name_does_not_slip_past_a_forbid(client: httpx.AsyncClient) -> None:
    await push(client, 'permit(principal, action, resource);\nforbid(principal, action == Action::"delete", resource);')
    d = await decide(client, ask("User:u", 'Action::"\\x64elete"', "Doc:d"))
    assert d["decision"] is False
    r = await client.post("/access/v1/evaluation", json=ask("User:u", 'Action::"\\qdelete"', "Doc:d"))
    assert r.status_code == 400, r.text


def test_an_escaped_id_over_the_limit_is_refused_unread() -> None:
    with pytest.raises(ApiError, match="longer than"):
        action_uid("action.name", 'Action::"' + "\\x41" * 3000 + '"')
