"""``meshauth admin`` against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshauth.cli import app

runner = CliRunner()


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("REDIS_URL", "MESHAUTH_REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {
        "MESHAUTH_DATABASE_URL": db_url,
        "MESHAUTH_VAR_DIR": str(tmp_path),
        "MESHAUTH_ARGON2_TIME_COST": "1",
        "MESHAUTH_ARGON2_MEMORY_KIB": "8",
    }


def test_clients_create_list_disable_delete(env: dict[str, str]) -> None:
    """The client commands do what the admin API does."""
    r = runner.invoke(
        app,
        ["admin", "clients", "create", "svc", "--secret", "longsecret", "--scope", "read", "--grant", "password"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["grant_types"] == ["password"]
    listed = json.loads(runner.invoke(app, ["admin", "clients", "list"], env=env).output)
    assert [c["client_id"] for c in listed] == ["svc"]
    assert runner.invoke(app, ["admin", "clients", "disable", "svc"], env=env).exit_code == 0
    assert json.loads(runner.invoke(app, ["admin", "clients", "list"], env=env).output)[0]["disabled"] is True
    assert runner.invoke(app, ["admin", "clients", "delete", "svc"], env=env).exit_code == 0
    r = runner.invoke(app, ["admin", "clients", "delete", "svc"], env=env)
    assert r.exit_code == 1
    assert "no client" in r.output


def test_client_validation(env: dict[str, str]) -> None:
    """Invalid input exits 2 with the field named, and writes nothing."""
    r = runner.invoke(app, ["admin", "clients", "create", "bad id", "--secret", "longsecret"], env=env)
    assert r.exit_code == 2
    assert "client_id" in r.output
    r = runner.invoke(
        app, ["admin", "clients", "create", "ok", "--secret", "longsecret", "--grant", "implicit"], env=env
    )
    assert r.exit_code == 2
    assert json.loads(runner.invoke(app, ["admin", "clients", "list"], env=env).output) == []


def test_duplicate_client(env: dict[str, str]) -> None:
    """Creating an existing client fails with a message."""
    args = ["admin", "clients", "create", "svc", "--secret", "longsecret"]
    assert runner.invoke(app, args, env=env).exit_code == 0
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 1
    assert "already exists" in r.output


def test_users(env: dict[str, str]) -> None:
    """User commands create, list, disable and delete; attributes must be a JSON object."""
    r = runner.invoke(
        app,
        ["admin", "users", "create", "alice", "--password", "longpassword", "--attributes", '{"team": "a"}'],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(runner.invoke(app, ["admin", "users", "list"], env=env).output)[0]["attributes"] == {"team": "a"}
    r = runner.invoke(
        app, ["admin", "users", "create", "bob", "--password", "longpassword", "--attributes", "[1"], env=env
    )
    assert r.exit_code == 2
    assert runner.invoke(app, ["admin", "users", "disable", "alice"], env=env).exit_code == 0
    assert runner.invoke(app, ["admin", "users", "delete", "alice"], env=env).exit_code == 0
    assert runner.invoke(app, ["admin", "users", "delete", "alice"], env=env).exit_code == 1


def test_rotate_keys(env: dict[str, str]) -> None:
    """rotate-keys makes a new signer and reports that no Redis was there to notify."""
    first = runner.invoke(app, ["admin", "rotate-keys"], env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["admin", "rotate-keys"], env=env)
    assert second.output.split()[3] != first.output.split()[3]
    assert "next key refresh" in second.output
