"""JSON log lines with the request's id, trace id and span id (the ids themselves: test_trace.py)."""

from __future__ import annotations

import json
import logging
import sys

from meshauth.observability import logs, trace
from meshauth.observability.logs import JsonFormatter
from meshauth.observability.trace import RequestContext, asgi_values

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("meshauth.test", logging.WARNING, __file__, 1, msg, args or ("world",), None)
    r.__dict__.update(extra)
    return r


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
    """The same ids on every line of one request: its request id, its caller's trace id, the caller's
    span as parent and one span id of this service's own."""
    headers = asgi_values([(b"x-request-id", b"req-1"), (b"traceparent", TRACEPARENT.encode())])
    token = trace.current.set(RequestContext(headers))
    try:
        first = json.loads(JsonFormatter().format(record()))
        second = json.loads(JsonFormatter().format(record()))
    finally:
        trace.current.reset(token)
    assert first == {**second, "ts": first["ts"]}
    assert first["request_id"] == "req-1"
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["parent_span_id"] == "00f067aa0ba902b7"
    assert len(first["span_id"]) == 16 and first["span_id"] != "00f067aa0ba902b7"


def test_a_line_of_a_request_without_traceparent_starts_a_trace() -> None:
    """No (or an invalid) traceparent: a new trace id, no parent span."""
    token = trace.current.set(RequestContext(asgi_values([(b"traceparent", b"00-bogus")])))
    try:
        doc = json.loads(JsonFormatter().format(record()))
    finally:
        trace.current.reset(token)
    assert len(doc["trace_id"]) == 32 and "parent_span_id" not in doc
    assert "bogus" not in json.dumps(doc)


def test_a_generated_request_id_is_stable_within_the_request() -> None:
    token = trace.current.set(RequestContext(asgi_values([(b"host", b"x")])))
    try:
        ids = {json.loads(JsonFormatter().format(record()))["request_id"] for _ in range(3)}
    finally:
        trace.current.reset(token)
    assert len(ids) == 1


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
