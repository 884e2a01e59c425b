"""``meshauth admin users import`` / ``clients import``: JSON Lines, bad lines by number, all or none."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type
from typer.testing import CliRunner

from meshauth.cli import app
from meshauth.cli.admin_import import MAX_LINE_BYTES, read_lines

runner = CliRunner()
PHC = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID).hash("migrated-1")


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("REDIS_URL", "MESHAUTH_REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {
        "MESHAUTH_DATABASE_URL": db_url,
        "MESHAUTH_VAR_DIR": str(tmp_path),
        "MESHAUTH_ARGON2_TIME_COST": "1",
        "MESHAUTH_ARGON2_MEMORY_KIB": "8",
        "MESHAUTH_BULK_HASH_PROCESSES": "2",
    }


def _file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _users(env: dict[str, str]) -> dict[str, dict[str, object]]:
    listed = json.loads(runner.invoke(app, ["admin", "users", "list"], env=env).stdout)
    return {u["username"]: u for u in listed}


LINES = [
    b'{"username": "a1", "password": "password-1"}',
    b"",
    b'{"username": "bad name", "password": "password-1"}',
    b"{not json",
    b'{"username": "a2", "password_hash": "' + PHC.encode() + b'", "attributes": {"x": 1}}',
    b'{"username": "a3", "password": "\xff\xfe"}',
    b"[" * 5000 + b"]" * 5000,
]


def test_bad_lines_reported_by_number_and_nothing_written(env: dict[str, str], tmp_path: Path) -> None:
    """Every bad line is named by its number (blank lines count); by default nothing is written."""
    r = runner.invoke(app, ["admin", "users", "import", str(_file(tmp_path, LINES))], env=env)
    assert r.exit_code == 1
    summary = json.loads(r.stdout)
    assert summary["committed"] is False and summary["created"] == 0
    assert [x["line"] for x in summary["refused"]] == [3, 4, 6, 7]
    assert "username" in summary["refused"][0]["reason"]
    assert "UTF-8" in summary["refused"][2]["reason"]
    assert "nothing was written" in r.stderr
    assert _users(env) == {}


def test_partial_writes_the_valid_lines(env: dict[str, str], tmp_path: Path) -> None:
    """--partial writes the valid lines (the pre-hashed one unchanged), reports the bad ones, shows progress."""
    r = runner.invoke(app, ["admin", "users", "import", str(_file(tmp_path, LINES)), "--partial"], env=env)
    assert r.exit_code == 1
    summary = json.loads(r.stdout)
    assert summary["committed"] is True and summary["created"] == 2
    assert [x["line"] for x in summary["refused"]] == [3, 4, 6, 7]
    assert "users written: 2/2" in r.stderr
    assert "passwords hashed: 1/1" in r.stderr
    users = _users(env)
    assert set(users) == {"a1", "a2"} and users["a2"]["attributes"] == {"x": 1}
    again = runner.invoke(app, ["admin", "users", "import", str(_file(tmp_path, LINES[:1])), "--partial"], env=env)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["updated"] == 1


def test_clients_import(env: dict[str, str], tmp_path: Path) -> None:
    """Clients import the same way; a clean file exits 0."""
    lines = [b'{"client_id": "c1", "client_secret": "secret-123", "scopes": ["read"]}']
    r = runner.invoke(app, ["admin", "clients", "import", str(_file(tmp_path, lines))], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 1
    listed = json.loads(runner.invoke(app, ["admin", "clients", "list"], env=env).stdout)
    assert [c["client_id"] for c in listed] == ["c1"]


def test_an_overlong_line_is_refused_without_reading_it_into_memory(tmp_path: Path) -> None:
    """A line past ``MAX_LINE_BYTES`` is refused by number while memory stays near that limit; the lines
    after it keep their numbers. Before, the whole line was read first (a 1 GB line: 1 GB held)."""
    path = tmp_path / "long.jsonl"
    with path.open("wb") as f:
        f.write(b'{"a": 1}\n{"b": "')
        for _ in range(32):
            f.write(b"x" * MAX_LINE_BYTES)
        f.write(b'"}\n{"c": 3}')  # and no newline after the last line
    tracemalloc.start()
    try:
        items, lines, bad = read_lines(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert items == [{"a": 1}, {"c": 3}] and lines == [1, 3]
    assert [(r.index, r.reason) for r in bad] == [(2, f"line is over {MAX_LINE_BYTES} bytes")]
    assert peak < 4 * MAX_LINE_BYTES


def test_a_byte_order_mark_is_refused_by_name(tmp_path: Path) -> None:
    """A file saved "UTF-8 with BOM" (Windows tools): its first line is refused saying so, not as an
    invalid character at byte 0 the admin cannot see; CRLF endings and a last line without one are fine."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"b": 2}\r\n{"c": 3}')
    items, lines, bad = read_lines(path)
    assert items == [{"b": 2}, {"c": 3}] and lines == [2, 3]
    assert [r.index for r in bad] == [1]
    assert "byte order mark" in bad[0].reason
