"""``meshauth policy`` / ``meshauth entities`` given what a careless operator gives them: one error line,
a non-zero exit, no traceback, and never the admin token or a URL's password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env, meshauth, problem_lines


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("token", ["s3cret-admin-token\r", "s3cret-admin-token\nX-Evil: 1", "s3cret\x00token"])
def test_an_admin_token_with_control_characters_is_not_printed(tmp_path: Path, token: str) -> None:
    """A token read from a CRLF file or pasted with a newline: http.client's refusal quoted the whole
    ``Authorization`` line (the token) in a traceback."""
    if "\x00" in token:  # an environment variable cannot hold NUL: the token file can
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "admin-token").write_text(token)
        result = meshauth(tmp_path, "policy", "versions", "--url", closed_url())
    else:
        result = meshauth(tmp_path, "policy", "versions", "--url", closed_url(), MESHAUTH_ADMIN_TOKEN=token)
    line = _one_error(result)
    assert "s3cret" not in result.stderr + result.stdout
    assert "admin token" in line


def test_a_url_with_credentials_is_shown_masked(tmp_path: Path) -> None:
    url = closed_url().replace("http://", "http://admin:hunter2@")
    line = _one_error(meshauth(tmp_path, "policy", "versions", "--url", url))
    assert "hunter2" not in line, line


@pytest.mark.parametrize("url", ["policy.internal:8090", "http://127.0.0.1:99999", "http://[::1"])
def test_a_url_that_is_not_one(tmp_path: Path, url: str) -> None:
    line = _one_error(meshauth(tmp_path, "policy", "versions", "--url", url))
    assert "error" in line


def test_a_store_name_that_is_not_utf8(tmp_path: Path) -> None:
    """A non-UTF-8 argument (surrogate-escaped by Python) reaches the service, which judges the name."""
    result = subprocess.run(
        [sys.executable, "-m", "meshauth", "policy", "versions", os.fsdecode(b"\xff\xfe"), "--url", closed_url()],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _one_error(result)


def test_pushing_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cedar"
    bad.write_bytes(b"permit(principal, action, resource) when { \xff };\n")
    result = meshauth(tmp_path, "policy", "push", str(bad), "--url", closed_url())
    assert result.returncode == 2  # a usage error, shown as typer shows every bad argument
    assert "Traceback" not in result.stderr, result.stderr
    assert "UTF-8" in result.stderr, result.stderr


@pytest.mark.parametrize("command", [["entities", "load"], ["policy", "schema"]])
def test_loading_a_file_that_cannot_be_read(tmp_path: Path, command: list[str]) -> None:
    """A file that exists but whose read fails (/proc/self/mem: EIO at offset 0): not an OSError traceback."""
    result = meshauth(tmp_path, *command, "/proc/self/mem", "--url", closed_url())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert "cannot be read" in result.stderr, result.stderr


def test_pushing_a_fifo_says_what_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "p.cedar"
    os.mkfifo(fifo)
    result = meshauth(tmp_path, "policy", "push", str(fifo), "--url", closed_url(), timeout=20)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "does not exist" not in result.stderr, result.stderr


@pytest.mark.parametrize("command", [["entities", "load"], ["policy", "schema"], ["policy", "push"]])
def test_a_file_that_never_ends_is_not_read_whole(tmp_path: Path, command: list[str]) -> None:
    """``/dev/zero`` (or a multi-GB file named by mistake) was read whole into memory before anything was
    sent: read up to the upload limit, then refused naming it."""
    target = "/dev/zero"
    if command[1] == "push":  # push takes regular files (or directories) only: a sparse 2 MiB file
        big = tmp_path / "big.cedar"
        with big.open("wb") as fh:
            fh.truncate(2 * 1_048_576)
        target = str(big)
    result = meshauth(
        tmp_path,
        *command,
        target,
        "--url",
        closed_url(),
        timeout=30,
        MESHAUTH_POLICY_MAX_UPLOAD_BYTES="1048576",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "MESHAUTH_POLICY_MAX_UPLOAD_BYTES" in result.stderr, result.stderr


def test_a_url_that_is_not_a_policy_service(tmp_path: Path) -> None:
    """Another web server on that port answers 200 with HTML: said so, not "not a valid URL" nor a KeyError."""
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        line = _one_error(meshauth(tmp_path, "policy", "versions", "--url", url))
    finally:
        server.shutdown()
        server.server_close()
    assert "not a meshauth policy service" in line, line
