"""harness.lua under real wrk: every answer counted by status, ``@n`` replaced by line n of the token
file, and a missing token failing the run rather than sending a wrong header."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from meshauth.bench import drivers
from tests.bench.local_http import serving

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        auth = self.headers.get("authorization", "")
        _Handler.seen.add(auth)
        status = 200 if auth == "Bearer tok-two" else 403 if auth == "Bearer tok-one" else 401
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url


def test_statuses_counted_and_tokens_read_by_line(server: str, tmp_path: Path) -> None:
    tokens = tmp_path / "users.tokens"
    tokens.write_text("tok-one\ntok-two\n")
    lines = tmp_path / "z.lines"
    lines.write_text("/a\t@2\n/b\t@1\n/c\t@2\n/d\tBearer other\n")
    _Handler.seen.clear()
    run = drivers.wrk(
        server, seconds=1, connections=2, rate=400, lines=lines, tokens=tokens, expected=frozenset({200, 403})
    )
    assert run.requests > 50
    assert set(run.statuses) == {"200", "401", "403"}
    assert sum(run.statuses.values()) == run.requests
    assert run.errors == run.statuses["401"]  # 200 and 403 expected; the foreign token's 401s are errors
    assert _Handler.seen == {"Bearer tok-one", "Bearer tok-two", "Bearer other"}
    assert "HARNESS_TOKENS=" in run.command


def test_a_token_line_that_does_not_exist_fails_the_run(server: str, tmp_path: Path) -> None:
    tokens = tmp_path / "users.tokens"
    tokens.write_text("tok-one\n")
    lines = tmp_path / "z.lines"
    lines.write_text("/a\t@7\n")
    with pytest.raises(RuntimeError, match="no harness summary"):
        drivers.wrk(server, seconds=1, connections=1, rate=100, lines=lines, tokens=tokens)
