"""Hostile policy uploads, run in a child process (``python -m tests.policy.upload_scenario``).

A policy that overflows the engine's stack kills the interpreter, so the tests run each dangerous
scenario here and read one JSON line from stdout: a regression then fails a test instead of
killing pytest.

Scenarios:

``upload DB_URL VAR_DIR POLICY_FILE``
    Activate a good version (alice allowed, bob forbidden), upload the file's text with
    ``activate: true``, then report the upload's answer, the versions, a decision from this app,
    and a decision from a fresh app on the same database (a new worker).

``persisted DB_URL VAR_DIR POLICY_FILE``
    Write the file's text straight into the database as the active version of store ``poisoned``
    (as an older release could have), then start an app and report what decisions for that store
    and for ``default`` answer, and what the admin store view says.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from meshauth.db import create_engine
from meshauth.policy import stores
from tests.policy.conftest import ADMIN, ask, running, settings_for

GOOD = (
    '@id("allow-all") permit(principal, action, resource);\n'
    '@id("no-bob") forbid(principal == User::"bob", action, resource);'
)


async def _decision(client: Any, body: dict[str, Any], store: str = "default") -> dict[str, Any]:
    path = "/access/v1/evaluation" if store == "default" else f"/stores/{store}/access/v1/evaluation"
    r = await client.post(path, json=body)
    return {"status": r.status_code, "body": r.json()}


async def upload(db_url: str, var: Path, text: str) -> dict[str, Any]:
    settings = settings_for(db_url, var)
    out: dict[str, Any] = {}
    async with running(settings) as (_app, client):
        r = await client.post(
            "/admin/stores/default/policies", json={"policies": GOOD, "activate": True}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/admin/stores/default/policies", json={"policies": text, "activate": True}, headers=ADMIN
        )
        out["upload"] = {"status": r.status_code, "body": r.json() if r.content else None}
        out["versions"] = (await client.get("/admin/stores/default/policies", headers=ADMIN)).json()
        out["alice"] = await _decision(client, ask("User:alice", "view", "Doc:d"))
        out["bob"] = await _decision(client, ask("User:bob", "view", "Doc:d"))
    async with running(settings) as (_app, fresh):
        out["fresh_alice"] = await _decision(fresh, ask("User:alice", "view", "Doc:d"))
        out["fresh_bob"] = await _decision(fresh, ask("User:bob", "view", "Doc:d"))
    return out


async def persisted(db_url: str, var: Path, text: str) -> dict[str, Any]:
    engine = create_engine(settings_for(db_url, var).sqlalchemy_url)
    async with engine.begin() as conn:
        await stores.ensure(conn, "poisoned")
        version = await stores.add_version(conn, "poisoned", text, "an older release")
        await stores.activate(conn, "poisoned", version)
    await engine.dispose()
    out: dict[str, Any] = {}
    async with running(settings_for(db_url, var)) as (_app, client):
        r = await client.post("/admin/stores/default/policies", json={"policies": GOOD}, headers=ADMIN)
        assert r.status_code == 201, r.text
        out["poisoned"] = await _decision(client, ask("User:alice", "view", "Doc:d"), "poisoned")
        out["poisoned_again"] = await _decision(client, ask("User:alice", "view", "Doc:d"), "poisoned")
        out["default"] = await _decision(client, ask("User:alice", "view", "Doc:d"))
        out["view"] = (await client.get("/admin/stores/poisoned", headers=ADMIN)).json()
        r = await client.post(
            "/admin/stores/poisoned/policies", json={"policies": GOOD, "activate": True}, headers=ADMIN
        )
        out["repair"] = {"status": r.status_code, "body": r.json()}
        out["repaired"] = await _decision(client, ask("User:alice", "view", "Doc:d"), "poisoned")
    return out


def main() -> None:
    scenario, db_url, var, policy_file = sys.argv[1:5]
    text = Path(policy_file).read_text()
    run = {"upload": upload, "persisted": persisted}[scenario]
    print(json.dumps(asyncio.run(run(db_url, Path(var), text))))


if __name__ == "__main__":
    main()
