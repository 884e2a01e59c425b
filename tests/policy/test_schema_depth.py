"""Schemas whose types nest too deeply once common types are resolved are refused before the engine
sees them: a typed value is parsed recursively, so one decision request against such a schema could
crash the worker (found from outside: ~14,000 levels through a chain of common types)."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshauth.policy.schema_depth import SchemaTooDeep, cedar_schema_depth, json_schema_depth
from tests.policy.conftest import ADMIN, TOKEN, push, served

ALLOW = "permit(principal, action, resource);"
CHAIN = 20_000  # deep enough to crash the value parser on an 8 MiB stack before the fix


def cedar_alias_chain(n: int) -> str:
    aliases = "".join(f"type T{i} = Set<T{i - 1}>;\n" for i in range(1, n + 1))
    declarations = "entity Doc;\naction read appliesTo { principal: User, resource: Doc };"
    return f"type T0 = Long;\n{aliases}entity User {{ a?: T{n} }};\n{declarations}"


def json_alias_chain(n: int) -> dict[str, Any]:
    common: dict[str, Any] = {"T0": {"type": "Long"}}
    for i in range(1, n + 1):
        common[f"T{i}"] = {"type": "Set", "element": {"type": f"T{i - 1}"}}
    return {
        "": {
            "commonTypes": common,
            "entityTypes": {
                "User": {"shape": {"type": "Record", "attributes": {"a": {"type": f"T{n}", "required": False}}}},
                "Doc": {},
            },
            "actions": {"read": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}}},
        }
    }


def test_a_chain_of_common_types_is_as_deep_as_the_chain() -> None:
    """Each link of ``type Tn = Set<Tn-1>`` adds a level, in the Cedar and the JSON format alike."""
    assert cedar_schema_depth(cedar_alias_chain(50)) >= 50
    assert json_schema_depth(json.dumps(json_alias_chain(50))) >= 50


def test_set_nesting_counts() -> None:
    """``Set<Set<…>>`` nests even though ``<`` is no bracket to the policy checks."""
    text = "entity User { a: " + "Set<" * 40 + "Long" + ">" * 40 + " };"
    assert cedar_schema_depth(text) >= 40


def test_a_realistic_schema_is_shallow() -> None:
    """Namespaces, records, sets of records and common types stay far below the default limit of 32."""
    text = """
    namespace App {
      type Address = { street: String, city: String, tags: Set<String> };
      entity User in [Group] { name: String, home: Address, roles: Set<{ name: String, since: Long }> };
      entity Group;
      entity Doc { owner: User, labels: Set<String> };
      action read appliesTo { principal: User, resource: Doc, context: { ip: ipaddr, via: Address } };
    }
    """
    assert cedar_schema_depth(text) <= 8


def test_a_cycle_of_common_types_is_refused() -> None:
    """Common types that refer to each other have no depth: refused (Cedar refuses them too)."""
    doc = {"": {"commonTypes": {"A": {"type": "Set", "element": {"type": "B"}}, "B": {"type": "A"}}}}
    with pytest.raises(SchemaTooDeep):
        json_schema_depth(json.dumps(doc))


@pytest.mark.parametrize("fmt", ["cedar", "json"])
async def test_a_deep_alias_chain_schema_is_422(client: httpx.AsyncClient, fmt: str) -> None:
    """Uploading a 20,000-link chain of common types is a 422 naming the limit; nothing changes."""
    await push(client, ALLOW)
    if fmt == "json":
        body, media = json.dumps(json_alias_chain(CHAIN)), "application/json"
    else:
        body, media = cedar_alias_chain(CHAIN), "text/plain"
    r = await client.put("/admin/stores/default/schema", content=body, headers={**ADMIN, "content-type": media})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"] == "invalid_schema"
    assert "policy_max_nesting_depth" in r.json()["error_description"]
    assert (await client.get("/admin/stores/default/schema", headers=ADMIN)).status_code == 404


async def test_deep_set_nesting_schema_is_422(client: httpx.AsyncClient) -> None:
    """``Set<Set<…20,000…>>`` in an attribute is a 422 before the schema parser sees it."""
    text = "entity User { a?: " + "Set<" * CHAIN + "Long" + ">" * CHAIN + " };\nentity Doc;"
    r = await client.put("/admin/stores/default/schema", content=text, headers={**ADMIN, "content-type": "text/plain"})
    assert r.status_code == 422, r.text[:300]
    assert "policy_max_nesting_depth" in r.json()["error_description"]


def _call(url: str, path: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_stored_deep_schema_cannot_crash_a_worker(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A deep schema already in the database (written by an older release) makes its store answer
    503, and a decision carrying a value of the deep type does not crash the served worker."""
    var: Path = tmp_path_factory.mktemp("deep-schema")
    with served(["-m", "meshauth.policy.server"], var, TOKEN) as url:
        req = urllib.request.Request(
            url + "/admin/stores/deep/policies",
            data=json.dumps({"policies": ALLOW, "activate": True}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=30).close()
    # As an older release could have stored it, with no server running.
    with sqlite3.connect(var / "m.db") as db:
        db.execute(
            "UPDATE policy_stores SET schema_text = ?, schema_format = 'json', revision = revision + 1"
            " WHERE name = 'deep'",
            (json.dumps(json_alias_chain(CHAIN)),),
        )
    ask = {
        "subject": {"type": "User", "id": "x", "properties": {"a": [[[1]]]}},
        "action": {"name": "read"},
        "resource": {"type": "Doc", "id": "d"},
        "context": {"c": [[[1]]]},
    }
    with served(["-m", "meshauth.policy.server"], var, TOKEN) as url:
        assert _call(url, "/stores/deep/access/v1/evaluation", ask) == 503
        assert _call(url, "/stores/deep/access/v1/evaluations", {"evaluations": [ask, ask]}) == 503
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
