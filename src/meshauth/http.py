"""HTTP glue both services share: bounded body reads, machine-readable errors, fast JSON responses.

Every request body meshauth reads goes through a reader here or in ``meshauth.rsgi_bridge`` /
``meshauth.policy.fast`` (the native decision paths), all built on ``collect_bounded`` and
``reading_body`` below, so they hold the same rules: refuse
over the size limit (413) before buffering it, give the whole body ``http_body_read_timeout``
seconds (408; hyper has no body timer), and treat a client that goes away mid-body as an everyday
event — counted, logged as one line at most per minute, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from meshauth.deadlines import BodyDeadline
from meshauth.observability.metrics import IntCounters

if TYPE_CHECKING:
    from meshauth.config import Settings

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

DISCONNECTS = IntCounters(
    "meshauth_http_client_disconnects", "Requests whose client went away before sending the whole body.", []
)
BODY_TIMEOUTS = IntCounters(
    "meshauth_http_body_timeouts", "Requests answered 408: the body did not arrive within the body timeout.", []
)
_DEFAULT_BODY_READ_TIMEOUT = 30.0
_body_read_timeout = _DEFAULT_BODY_READ_TIMEOUT


def configure(settings: Settings) -> None:
    """Apply the transport settings to this process's body readers (``serve`` does, per worker)."""
    global _body_read_timeout  # one process-wide value, set once at worker start
    _body_read_timeout = settings.http_body_read_timeout


def body_read_timeout() -> float:
    """Seconds a request's whole body may take to arrive."""
    return _body_read_timeout


class ApiError(Exception):
    """A client-facing error: rendered as ``{"error": …, "error_description": …}`` with ``status``."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> bytes:
        return error_body(self.error, self.description, self.extra)

    def response(self) -> Response:
        headers = {"cache-control": "no-store", **self.headers}
        return Response(self.body(), status_code=self.status, headers=headers, media_type="application/json")


def error_body(error: str, description: str, extra: Mapping[str, Any] | None = None) -> bytes:
    """The one JSON error body every transport sends: ``{"error", "error_description", **extra}``."""
    fields: dict[str, Any] = {"error": error, "error_description": description}
    if extra:
        fields.update(extra)
    return _encoder.encode(fields)


# What a 500 says, on every transport: nothing about the internals (the traceback goes to the log).
INTERNAL_ERROR = ("server_error", "internal error; see the service log")


def media_type(content_type: str | bytes | None) -> str:
    """The media type of a ``Content-Type`` value, parameters dropped, lower-cased ("" when absent)."""
    if content_type is None:
        return ""
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
    return text.split(";", 1)[0].strip().lower()


def json_response(content: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(content), status_code=status, headers=dict(headers or {}), media_type="application/json"
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"request body is over {limit} bytes")


def check_length(declared: str | bytes | None, limit: int) -> None:
    """Refuse on the declared ``Content-Length`` before reading anything."""
    if declared is None:
        return
    # ASCII digits only: ``str.isdigit`` also takes "²", which ``int()`` refuses (a ValueError: a 500).
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(400, "invalid_request", "Content-Length is not a number")
    # 1*DIGIT (RFC 9110 §8.6): leading zeros are allowed, and granian passes thousands of them on,
    # past the 4,300 digits ``int()`` converts. Count the significant ones.
    significant = declared.lstrip(b"0") if isinstance(declared, bytes) else declared.lstrip("0")
    if len(significant) > len(str(limit)) or int(significant or 0) > limit:
        raise too_large(limit)


class _OncePerInterval:
    """Logs a recurring event as one line, then at most one line per ``interval`` with the count."""

    def __init__(self, message: str, interval: float = 60.0) -> None:
        self._message = message
        self._interval = interval
        self._unlogged = 0
        self._next = 0.0

    def note(self) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now >= self._next:
            log.warning(self._message, self._unlogged)
            self._unlogged = 0
            self._next = now + self._interval


_went_away = _OncePerInterval(
    "%d client(s) went away before sending the whole request body"
    " (counted in meshauth_http_client_disconnects_total; at most one such line a minute)"
)


def client_went_away() -> ApiError:
    """Count and (rate-limited) log a client that left mid-body; the 400 it returns goes nowhere
    useful, but keeps every reader's contract: a body, or an ApiError."""
    DISCONNECTS.add()
    _went_away.note()
    return ApiError(400, "invalid_request", "client went away before sending the whole body")


def body_timed_out() -> ApiError:
    BODY_TIMEOUTS.add()
    return ApiError(
        408,
        "request_timeout",
        f"the request body did not arrive within {_body_read_timeout:g} s",
        headers={"connection": "close"},  # the rest of the body may still come: do not reuse this connection
    )


def utf8_problem(body: bytes) -> str | None:
    """None when ``body`` is UTF-8, else where it is not. JSON text must be UTF-8 (RFC 8259 §8.1);
    checking the whole body also covers strings a typed decoder skips without looking."""
    if body.isascii():  # ~50 ns for a decision-sized body: the common case costs nothing
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start} (JSON must be UTF-8)"
    return None


async def collect_bounded(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Join ``chunks``, refusing with 413 as soon as they pass ``limit`` bytes (before buffering it all)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _ReadingBody:
    """``reading_body``'s context manager, as a class: a generator-based ``contextlib.contextmanager``
    cost ~3 % of the policy service's Python time on the decision path (creating and stepping the
    generator per request; py-spy, issue 10's cold rows, stop 20)."""

    __slots__ = ("_deadline", "_went_away")

    def __init__(self, went_away: type[BaseException]) -> None:
        self._went_away = went_away
        self._deadline = BodyDeadline(_body_read_timeout)

    def __enter__(self) -> None:
        self._deadline.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._deadline.__exit__(exc_type, exc, tb)
        except TimeoutError:
            raise body_timed_out() from None
        if exc_type is None:
            return
        if issubclass(exc_type, self._went_away):
            raise client_went_away() from None
        if issubclass(exc_type, TimeoutError):
            raise body_timed_out() from None


def reading_body(went_away: type[BaseException]) -> _ReadingBody:
    """Around one body read: the body timeout (408), and ``went_away`` — how the transport says the
    client left mid-body — turned into the counted 400."""
    return _ReadingBody(went_away)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing with 413 as soon as it passes ``limit`` bytes (before buffering it all),
    408 when it takes longer than the body timeout, 400 (counted) when the client leaves mid-body."""
    check_length(request.headers.get("content-length"), limit)
    with reading_body(ClientDisconnect):
        return await collect_bounded(request.stream(), limit)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body, or a 400/413/415 that says what is wrong."""
    if media_type(request.headers.get("content-type")) != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await read_body(request, limit)
    problem = utf8_problem(raw)
    if problem is not None:
        raise ApiError(400, "invalid_request", f"body is not valid JSON: {problem}")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_request", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_request", "body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "body must be a JSON object")
    return data


async def api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


# Starlette's own 404 and 405 (no route, a route without that method), named as error codes.
_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed"}


async def http_exception_handler(_request: Request, exc: Exception) -> Response:
    """Starlette's routing errors in the error shape (its default is a plain-text body)."""
    assert isinstance(exc, HTTPException)
    return Response(
        error_body(_HTTP_ERRORS.get(exc.status_code, "invalid_request"), exc.detail),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )


async def unavailable_handler(_request: Request, exc: Exception) -> Response:
    """A dependency (database, Redis) failed: 503, nothing half-written (each write is one transaction)."""
    return ApiError(
        503,
        "temporarily_unavailable",
        f"a backing store is unavailable ({type(exc).__name__})",
        headers={"retry-after": "1"},
    ).response()


async def internal_error_handler(_request: Request, _exc: Exception) -> Response:
    # Never leak internals; the traceback goes to the server log through Starlette's error middleware.
    return Response(error_body(*INTERNAL_ERROR), status_code=500, media_type="application/json")
