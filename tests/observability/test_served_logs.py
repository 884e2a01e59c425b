"""``MESHAUTH_LOG_FORMAT=json``: a served process writes one JSON object per line, with request ids."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.served import Served, call, serve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def _abandon_body(served: Served, request_id: str, traceparents: tuple[str, ...] = (TRACEPARENT,)) -> None:
    """A decision request whose client leaves mid-body: the service logs one line while serving it."""
    head = (
        "POST /access/v1/evaluation HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: 100\r\nx-request-id: {request_id}\r\n"
        + "".join(f"traceparent: {t}\r\n" for t in traceparents)
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(head.encode() + b'{"subject":')


def _lines(served: Served) -> list[dict[str, object]]:
    return [json.loads(line) for line in served.log().splitlines() if line.strip()]


def _went_away(served: Served, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while len(went := [d for d in _lines(served) if "went away" in str(d["msg"])]) < count:
        assert time.monotonic() < deadline, served.log()
        time.sleep(0.05)
    return went


def test_json_lines_carry_the_request_id_and_trace_id(tmp_path: Path, valkey_url: str) -> None:
    with serve("policy", "rsgi", tmp_path, valkey_url, MESHAUTH_LOG_FORMAT="json") as served:
        assert call("GET", served.url + "/healthz")[0] == 200
        _abandon_body(served, "req-abc-123")
        (went,) = _went_away(served, 1)
        lines = _lines(served)  # every line parses: granian's own lines are JSON too
    assert went["request_id"] == "req-abc-123"
    assert went["trace_id"] == TRACE
    assert went["parent_span_id"] == "00f067aa0ba902b7"
    assert isinstance(went["span_id"], str) and len(went["span_id"]) == 16
    assert went["level"] == "warning"
    assert any(d["logger"] == "_granian" for d in lines)


def test_two_traceparent_lines_start_a_new_trace_when_served(tmp_path: Path, valkey_url: str) -> None:
    """Over RSGI (granian's header map) as over ASGI: a traceparent sent twice is ignored, not picked."""
    with serve("policy", "rsgi", tmp_path, valkey_url, MESHAUTH_LOG_FORMAT="json") as served:
        _abandon_body(served, "req-2", (TRACEPARENT, f"00-{'1' * 32}-00f067aa0ba902b7-01"))
        (went,) = _went_away(served, 1)
    assert went["trace_id"] not in (TRACE, "1" * 32) and "parent_span_id" not in went


def _raw_get(served: Served, path: str, *header_lines: str) -> dict[str, list[str]]:
    """A GET with exactly these header lines (urllib cannot repeat a header); the response's headers."""
    head = f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + "".join(h + "\r\n" for h in header_lines)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(head.encode("latin-1") + b"\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw and (chunk := s.recv(65536)):
            raw += chunk
    found: dict[str, list[str]] = {}
    for line in raw.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def test_both_services_echo_the_sanitised_request_id(tmp_path: Path, valkey_url: str) -> None:
    """The response carries the id the logs use: the caller's if sane, else a new one — never the
    caller's hostile value, and exactly one line."""
    for service, interface in (("auth", "asgi"), ("policy", "rsgi")):
        (tmp_path / service).mkdir()
        with serve(service, interface, tmp_path / service, valkey_url) as served:
            assert _raw_get(served, "/healthz", "x-request-id: abc-1")["x-request-id"] == ["abc-1"]
            for hostile in (
                (),
                ("x-request-id: a b",),
                ("x-request-id: " + "a" * 129,),
                ("x-request-id: \xff\xfe",),
                ("x-request-id: one", "x-request-id: two"),
            ):
                (echoed,) = _raw_get(served, "/healthz", *hostile)["x-request-id"]
                assert len(echoed) == 24 and all(c in "0123456789abcdef" for c in echoed), (service, hostile)
            assert _raw_get(served, "/no/such/path", "x-request-id: r-404")["x-request-id"] == ["r-404"]


def test_text_stays_the_default(tmp_path: Path, valkey_url: str) -> None:
    with serve("policy", "rsgi", tmp_path, valkey_url) as served:
        assert call("GET", served.url + "/healthz")[0] == 200
        assert "[INFO] Starting granian" in served.log()
