"""A NUL character is refused at the edge with 400 on both databases: PostgreSQL text cannot hold it
(the driver fails, which would read as a false 503), SQLite can — one behaviour for both."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.policy.conftest import ADMIN, ask, entity, load, push

ALLOW = "permit(principal, action, resource);"


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert "NUL" in r.json()["error_description"], r.text


async def test_nul_in_json_policy_upload_is_400(client: httpx.AsyncClient) -> None:
    """Policy text with a NUL, uploaded as JSON, is refused and nothing is stored."""
    r = await client.post(
        "/admin/stores/default/policies",
        json={"policies": 'permit(principal, action, resource) when { "a\u0000" == "a" };'},
        headers=ADMIN,
    )
    assert_refused(r)
    versions = await client.get("/admin/stores/default/policies", headers=ADMIN)
    assert "a\\u0000" not in versions.text


async def test_nul_in_text_policy_upload_is_400(client: httpx.AsyncClient) -> None:
    """Policy text with a raw NUL byte, uploaded as text, is refused."""
    r = await client.post(
        "/admin/stores/default/policies",
        content=b"permit(principal, action, resource);\x00",
        headers={**ADMIN, "content-type": "text/plain"},
    )
    assert_refused(r)


@pytest.mark.parametrize("fmt", ["cedar", "json"])
async def test_nul_in_schema_is_400(client: httpx.AsyncClient, fmt: str) -> None:
    """A schema holding a NUL byte, in either format, is refused before the engine parses it."""
    body = b"entity User;\x00" if fmt == "cedar" else b'{"": {"entityTypes": {"User\x00": {}}, "actions": {}}}'
    r = await client.put(f"/admin/stores/default/schema?format={fmt}", content=body, headers=ADMIN)
    assert_refused(r)


@pytest.mark.parametrize(
    "item",
    [
        entity("User:al\u0000ice"),
        entity("User:alice", {"team": "a\u0000b"}),
        entity("User:alice", {"nested": {"list": ["ok", "b\u0000"]}}),
        entity("User:alice", {"k\u0000": 1}),
        entity("User:alice", parents=("Group:g\u0000",)),
    ],
    ids=["id", "attribute", "nested-attribute", "attribute-name", "parent-id"],
)
async def test_nul_in_entity_upload_is_400(client: httpx.AsyncClient, item: dict[str, Any]) -> None:
    """An entity whose id, parent id or any attribute string holds a NUL is refused, nothing written."""
    r = await client.post("/admin/stores/default/entities", json={"entities": [item]}, headers=ADMIN)
    assert_refused(r)
    got = await client.get("/admin/stores/default/entities/User/alice", headers=ADMIN)
    assert got.status_code == 404, got.text


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_nul_in_entity_path_is_400(client: httpx.AsyncClient, method: str) -> None:
    """``/admin/stores/{store}/entities/{type}/{id}`` with ``%00`` in the id is a 400."""
    r = await client.request(method, "/admin/stores/default/entities/User/al%00ice", headers=ADMIN)
    assert_refused(r)


@pytest.mark.parametrize(
    "body",
    [
        ask("User:al\u0000ice", "read", "Doc:d"),
        ask("User:alice", "read", "Doc:d\u0000"),
        ask("User:alice", "read", "Doc:d", context={"ip": "1\u00002"}),
    ],
    ids=["subject", "resource", "context"],
)
async def test_nul_in_decision_request_is_never_503(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """A decision request holding a NUL is answered (a decision or a 400) on both databases, never a 503."""
    await push(client, ALLOW)
    await load(client, [entity("User:alice"), entity("Doc:d")])
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"] == "invalid_request"
