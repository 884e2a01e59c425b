"""The RSGI→ASGI bridge the policy service is served through (``meshauth.rsgi_bridge``)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import msgspec

from meshauth.http import ApiError
from meshauth.rsgi_bridge import forward, raw_path, respond_error


class _Scope:
    """The fields of granian's RSGI scope that ``forward`` reads."""

    proto = "http"
    http_version = "1.1"
    scheme = "http"
    client = "127.0.0.1:5000"
    server = "127.0.0.1:8090"
    query_string = ""
    method = "GET"

    def __init__(self, path: str) -> None:
        self.path = path
        self.headers = {"content-length": "0"}


class _Protocol:
    """granian's HTTP protocol object: a body, a disconnect to await, and what was answered."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, list[tuple[str, str]], bytes]] = []
        self.gone = asyncio.Event()

    async def __call__(self) -> bytes:
        return b""

    async def client_disconnect(self) -> None:
        await self.gone.wait()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))


async def _noted(scopes: list[MutableMapping[str, Any]], scope: MutableMapping[str, Any], send: Any) -> None:
    scopes.append(scope)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_raw_path_is_the_percent_encoded_path_not_the_decoded_one() -> None:
    """granian hands over the decoded path; ASGI's ``raw_path`` is the path as sent (escaped)."""
    scopes: list[MutableMapping[str, Any]] = []

    async def app(scope: MutableMapping[str, Any], _receive: Any, send: Any) -> None:
        await _noted(scopes, scope, send)

    await forward(app, _Scope("/stores/a b/caf\u00e9"), _Protocol(), max_body=1024)  # type: ignore[arg-type]
    assert scopes[0]["path"] == "/stores/a b/caf\u00e9"
    assert scopes[0]["raw_path"] == b"/stores/a%20b/caf%C3%A9"
    assert raw_path("/a/b-c_d.e~f:g@h") == b"/a/b-c_d.e~f:g@h"


async def test_receive_after_the_body_reports_the_client_leaving() -> None:
    """An app that asks for more after the whole body (a streaming response listening for the client)
    gets ``http.disconnect`` once granian says the client left, instead of waiting forever."""
    protocol = _Protocol()
    messages: list[dict[str, Any]] = []

    async def app(_scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        messages.append(await receive())
        messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    protocol.gone.set()  # the client has left
    await asyncio.wait_for(forward(app, _Scope("/x"), protocol, max_body=1024), timeout=5)  # type: ignore[arg-type]
    assert [m["type"] for m in messages] == ["http.request", "http.disconnect"]
    assert protocol.answers[0][0] == 200


def test_an_error_answered_natively_carries_its_extra_fields() -> None:
    """The RSGI error body is the one every transport sends, ``extra`` included."""
    protocol = _Protocol()
    respond_error(protocol, ApiError(409, "conflict", "version moved", extra={"current_version": 3}))  # type: ignore[arg-type]
    ((status, headers, body),) = protocol.answers
    assert status == 409
    assert ("content-type", "application/json") in headers
    assert msgspec.json.decode(body) == {
        "error": "conflict",
        "error_description": "version moved",
        "current_version": 3,
    }
