"""JSON log lines with the request's id and trace id; ids from headers are bounded and sanitised."""

from __future__ import annotations

import json
import logging
import sys

from meshauth.observability import logs
from meshauth.observability.logs import JsonFormatter, RequestContext, request_id, trace_ids

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("meshauth.test", logging.WARNING, __file__, 1, msg, args or ("world",), None)
    r.__dict__.update(extra)
    return r


def test_a_sane_request_id_is_kept() -> None:
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert request_id("a" * 128) == "a" * 128


def test_a_missing_or_hostile_request_id_is_replaced() -> None:
    """Absent, too long, NUL, newline (log injection), non-ASCII: a fresh random id instead."""
    for raw in (None, "", "a" * 129, "a\x00b", "a\nb", "a b", "é", '{"x":1}'):
        made = request_id(raw)
        assert made != raw
        assert len(made) == 24
        assert all(c in "0123456789abcdef" for c in made)
    assert request_id(None) != request_id(None)


def test_traceparent_gives_the_trace_and_parent_ids() -> None:
    assert trace_ids(TRACEPARENT) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def test_invalid_traceparents_are_ignored() -> None:
    for raw in (
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        TRACEPARENT + "-extra",  # version 00 has exactly four fields
        TRACEPARENT + "x" * 10_000,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00",
    ):
        assert trace_ids(raw) is None, raw


def test_a_line_outside_a_request_is_one_json_object() -> None:
    line = JsonFormatter().format(record(extra_field=7))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == "hello world"
    assert doc["level"] == "warning"
    assert doc["logger"] == "meshauth.test"
    assert doc["ts"].endswith("Z")
    assert doc["extra_field"] == 7
    assert "request_id" not in doc


def test_a_line_inside_a_request_carries_its_ids() -> None:
    """The same request id on every line of one request; trace ids from its traceparent."""
    headers = {"x-request-id": "req-1", "traceparent": TRACEPARENT}
    token = logs.current.set(RequestContext(headers.get))
    try:
        first = json.loads(JsonFormatter().format(record()))
        second = json.loads(JsonFormatter().format(record()))
    finally:
        logs.current.reset(token)
    assert first["request_id"] == second["request_id"] == "req-1"
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["parent_span_id"] == "00f067aa0ba902b7"


def test_a_generated_request_id_is_stable_within_the_request() -> None:
    token = logs.current.set(RequestContext(logs.asgi_header([(b"host", b"x")])))
    try:
        ids = {json.loads(JsonFormatter().format(record()))["request_id"] for _ in range(3)}
    finally:
        logs.current.reset(token)
    assert len(ids) == 1


def test_asgi_headers_are_read_case_insensitively_first_line_wins() -> None:
    get = logs.asgi_header([(b"X-Request-Id", b"one"), (b"x-request-id", b"two")])
    assert get("x-request-id") == "one"
    assert get("traceparent") is None


def test_exceptions_and_odd_values_stay_on_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        r = record("failed: %r", b"\xff\x00", odd=object())
        r.exc_info = sys.exc_info()
    line = JsonFormatter().format(r)
    assert "\n" not in line
    doc = json.loads(line)
    assert "ValueError: bad\nthing" in doc["exc"]
    assert doc["odd"].startswith("<object object")


def test_granian_config_is_none_for_text_and_json_for_json() -> None:
    assert logs.granian_config("text") is None
    config = logs.granian_config("json")
    assert config is not None
    assert config["formatters"]["json"]["()"] == "meshauth.observability.logs.JsonFormatter"
    assert config["root"]["handlers"] == ["console"]
