"""HTTP glue both services share: bounded body reads, machine-readable errors, fast JSON responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


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

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.error, "error_description": self.description}
        body.update(self.extra)
        headers = {"cache-control": "no-store", **self.headers}
        return json_response(body, status=self.status, headers=headers)


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
    if not declared.isdigit():
        raise ApiError(400, "invalid_request", "Content-Length is not a number")
    if int(declared) > limit:
        raise too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing with 413 as soon as it passes ``limit`` bytes (before buffering it all)."""
    check_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body, or a 400/413/415 that says what is wrong."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await read_body(request, limit)
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


async def unavailable_handler(_request: Request, exc: Exception) -> Response:
    """A dependency (database, Redis) failed: 503, nothing half-written (each write is one transaction)."""
    return json_response(
        {
            "error": "temporarily_unavailable",
            "error_description": f"a backing store is unavailable ({type(exc).__name__})",
        },
        status=503,
        headers={"retry-after": "1", "cache-control": "no-store"},
    )


async def internal_error_handler(_request: Request, _exc: Exception) -> Response:
    # Never leak internals; the traceback goes to the server log through Starlette's error middleware.
    return json_response(
        {"error": "server_error", "error_description": "internal error; see the service log"}, status=500
    )
