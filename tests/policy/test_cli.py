"""``meshauth policy`` / ``meshauth entities`` against a running policy service (a real server)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshauth.cli import app as cli
from tests.policy.conftest import served

TOKEN = "cli-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``meshauth serve policy`` (ASGI) on a free port over a fresh SQLite file."""
    with served(["-m", "meshauth", "serve", "policy"], tmp_path_factory.mktemp("var"), TOKEN) as url:
        yield url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"MESHAUTH_ADMIN_TOKEN": TOKEN})
    return result.exit_code, result.output


def evaluate(
    url: str, store: str, subject: str, action: str, resource: str, properties: dict[str, object] | None = None
) -> bool:
    body: dict[str, object] = {
        "subject": {"type": "User", "id": subject, **({"properties": properties} if properties else {})},
        "action": {"name": action},
        "resource": {"type": "Doc", "id": resource},
    }
    req = urllib.request.Request(
        f"{url}/stores/{store}/access/v1/evaluation",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        decision: bool = json.loads(resp.read())["decision"]
        return decision


def test_push_directory_versions_activate(server: str, tmp_path: Path) -> None:
    """Push a directory, push again, list versions, roll back: the service follows each step."""
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "a.cedar").write_text('permit(principal, action == Action::"view", resource);\n')
    code, out = run("policy", "push", "--store", "cli1", str(pol), "--url", server)
    assert code == 0, out
    assert "version 1 active" in out
    assert evaluate(server, "cli1", "u", "view", "d") is True

    (pol / "b.cedar").write_text('forbid(principal == User::"u", action, resource);\n')
    code, out = run("policy", "push", "--store", "cli1", str(pol), "--activate", "--url", server)
    assert code == 0, out
    assert evaluate(server, "cli1", "u", "view", "d") is False

    code, out = run("policy", "versions", "cli1", "--url", server)
    assert code == 0, out
    assert "* " in out.splitlines()[2]  # version 2 is the active one

    code, out = run("policy", "activate", "cli1", "1", "--url", server)
    assert code == 0, out
    assert evaluate(server, "cli1", "u", "view", "d") is True


def test_push_error_points_at_file_and_line(server: str, tmp_path: Path) -> None:
    """A syntax error is reported as file:line:column of the file that holds it."""
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "a.cedar").write_text("permit(principal, action, resource);\n")
    (pol / "b.cedar").write_text("\npermit(principal, action, resource) when { 1 + };\n")
    code, out = run("policy", "push", "--store", "cli2", str(pol), "--url", server)
    assert code == 1
    assert f"{pol / 'b.cedar'}:2:48" in out


def test_entities_load_and_delete(server: str, tmp_path: Path) -> None:
    """``entities load`` writes a JSON file of entities; ``entities delete`` removes one."""
    run("policy", "push", "--store", "cli3", "--url", server, str(_write(tmp_path, "p.cedar", GROUP_POLICY)))
    entities = [{"uid": {"type": "User", "id": "u"}, "attrs": {}, "parents": [{"type": "Group", "id": "g"}]}]
    code, out = run(
        "entities", "load", "--store", "cli3", str(_write(tmp_path, "e.json", json.dumps(entities))), "--url", server
    )
    assert code == 0, out
    assert evaluate(server, "cli3", "u", "view", "d") is True
    code, out = run("entities", "delete", "User", "u", "--store", "cli3", "--url", server)
    assert code == 0, out
    assert evaluate(server, "cli3", "u", "view", "d") is False


def test_unknown_store_is_an_error(server: str) -> None:
    """Listing versions of a missing store fails with the service's message."""
    code, out = run("policy", "versions", "nowhere", "--url", server)
    assert code == 1
    assert "no policy store" in out


def test_store_attribute_precedence(server: str, tmp_path: Path) -> None:
    """``policy store S`` shows a store; ``--attribute-precedence stored`` makes stored attributes
    win, so a request's ``suspended: false`` no longer undoes a stored ``true``."""
    policy = "permit(principal, action, resource) unless { principal.suspended };\n"
    run("policy", "push", "--store", "cli4", "--url", server, str(_write(tmp_path, "p.cedar", policy)))
    entities = [{"uid": {"type": "User", "id": "u"}, "attrs": {"suspended": True}, "parents": []}]
    run("entities", "load", "--store", "cli4", str(_write(tmp_path, "e.json", json.dumps(entities))), "--url", server)
    flip: dict[str, object] = {"suspended": False}
    assert evaluate(server, "cli4", "u", "view", "d", properties=flip) is True
    code, out = run("policy", "store", "cli4", "--url", server)
    assert code == 0, out
    assert "attribute precedence request" in out
    code, out = run("policy", "store", "cli4", "--attribute-precedence", "stored", "--url", server)
    assert code == 0, out
    assert "attribute precedence stored" in out
    assert evaluate(server, "cli4", "u", "view", "d", properties=flip) is False
    code, out = run("policy", "store", "cli4", "--attribute-precedence", "mine", "--url", server)
    assert code != 0
    assert "request" in out and "stored" in out


GROUP_POLICY = 'permit(principal in Group::"g", action, resource);\n'


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
