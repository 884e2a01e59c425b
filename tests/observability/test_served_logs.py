"""``MESHAUTH_LOG_FORMAT=json``: a served process writes one JSON object per line, with request ids."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.served import Served, call, serve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _abandon_body(served: Served, request_id: str) -> None:
    """A decision request whose client leaves mid-body: the service logs one line while serving it."""
    head = (
        "POST /access/v1/evaluation HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: 100\r\nx-request-id: {request_id}\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(head.encode() + b'{"subject":')


def _lines(served: Served) -> list[dict[str, object]]:
    return [json.loads(line) for line in served.log().splitlines() if line.strip()]


def test_json_lines_carry_the_request_id_and_trace_id(tmp_path: Path, valkey_url: str) -> None:
    with serve("policy", "rsgi", tmp_path, valkey_url, MESHAUTH_LOG_FORMAT="json") as served:
        assert call("GET", served.url + "/healthz")[0] == 200
        _abandon_body(served, "req-abc-123")
        deadline = time.monotonic() + 10
        while not [d for d in _lines(served) if "went away" in str(d["msg"])]:
            assert time.monotonic() < deadline, served.log()
            time.sleep(0.05)
        lines = _lines(served)  # every line parses: granian's own lines are JSON too
    (went,) = [d for d in lines if "went away" in str(d["msg"])]
    assert went["request_id"] == "req-abc-123"
    assert went["trace_id"] == TRACE
    assert went["level"] == "warning"
    assert any(d["logger"] == "_granian" for d in lines)


def test_text_stays_the_default(tmp_path: Path, valkey_url: str) -> None:
    with serve("policy", "rsgi", tmp_path, valkey_url) as served:
        assert call("GET", served.url + "/healthz")[0] == 200
        assert "[INFO] Starting granian" in served.log()
