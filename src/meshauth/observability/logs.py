"""Logging setup: text (as before: granian's format, Python's defaults) or JSON, one object per line.

JSON lines carry the request's id, trace id and span id when logged while a request is served
(``trace.RequestContext``, entered by ``requests.Instrumented`` and the gRPC gate). The id is the
caller's ``x-request-id`` when it is a sane token (Envoy sets one on every request in the mesh), else
one made up here; the trace id comes from a valid W3C ``traceparent``, else a new trace. Both are
worked out only when something needs them.
"""

from __future__ import annotations

import datetime
import json
import logging
import traceback
from typing import Any

from meshauth.observability.trace import current

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


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
            line.update(context.log_ids())
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
