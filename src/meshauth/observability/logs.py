"""Logging setup: text (as before: granian's format, Python's defaults) or JSON, one object per line.

JSON lines carry the request's id and trace id when logged while a request is served
(``requests.Instrumented`` enters a ``RequestContext``). The id is the caller's ``x-request-id``
when it is a sane token (Envoy sets one on every request in the mesh), else one made up here; the
trace id comes from a valid W3C ``traceparent``. Both are read from the headers only when a line
is actually written, so a request that logs nothing pays one context-variable set.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import re
import traceback
from collections.abc import Callable
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID = 128
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# W3C Trace Context: version-traceid-parentid-flags; all-zero ids and version ff are invalid.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

HeaderGetter = Callable[[str], str | None]


def request_id(raw: str | None) -> str:
    """``raw`` if it is a usable id (≤ 128 of ``A-Za-z0-9._:/+=-``), else a new random one."""
    if raw is not None and _REQUEST_ID.fullmatch(raw):
        return raw
    return os.urandom(12).hex()


def trace_ids(traceparent: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` from a valid ``traceparent`` header, else None."""
    if traceparent is None or len(traceparent) > 512:
        return None
    found = _TRACEPARENT.fullmatch(traceparent.strip())
    if found is None:
        return None
    version, trace, span, _flags = found.groups()
    if version == "ff" or trace == "0" * 32 or span == "0" * 16:
        return None
    if version == "00" and len(traceparent.strip()) != 55:
        return None
    return trace, span


class RequestContext:
    """The request being served, as far as its log lines need it; ids are worked out on first use."""

    __slots__ = ("_header", "_ids")

    def __init__(self, header: HeaderGetter) -> None:
        self._header = header
        self._ids: dict[str, str] | None = None

    def ids(self) -> dict[str, str]:
        if self._ids is None:
            ids = {"request_id": request_id(self._header(REQUEST_ID_HEADER))}
            traced = trace_ids(self._header(TRACEPARENT_HEADER))
            if traced is not None:
                ids["trace_id"], ids["parent_span_id"] = traced
            self._ids = ids
        return self._ids


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("meshauth_request", default=None)


def asgi_header(headers: list[tuple[bytes, bytes]]) -> HeaderGetter:
    """A header reader over an ASGI scope's raw headers (first line wins; bytes read as Latin-1)."""

    def get(name: str) -> str | None:
        wanted = name.encode()
        for key, value in headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    return get


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, the request's ids,
    the exception if any, and any ``extra`` fields. Never raises on odd values: ``repr`` instead."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        line: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        context = current.get()
        if context is not None:
            line.update(context.ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=repr, ensure_ascii=False)


def granian_config(log_format: str) -> dict[str, Any] | None:
    """granian's ``log_dictconfig`` for a format: None keeps granian's own (text); ``json`` sends
    granian's lines and every other logger's (the root) through ``JsonFormatter`` on stdout."""
    if log_format != "json":
        return None
    formatter = {"()": f"{__name__}.JsonFormatter"}
    stdout = {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    return {
        "formatters": {"json": formatter},
        "handlers": {"console": stdout},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }


def json_enabled() -> bool:
    """Whether the root logger writes JSON (so request contexts are worth entering)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
