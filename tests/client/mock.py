"""A test transport (no network) that answers like the policy service, and a hand-driven clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from meshauth.client import Response

Handler = Callable[[str, dict[str, Any]], Awaitable[Response]]


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def verdict(item: dict[str, Any], revision: int = 1, allow: bool = True) -> dict[str, Any]:
    """The fake policy: allow unless the subject id starts with "x" (or ``allow`` is off: deny all)."""
    allowed = allow and not item["subject"]["id"].startswith("x")
    return {"decision": allowed, "context": {"revision": revision, "policies": ["p"] if allowed else [], "errors": []}}


async def one_bad(url: str, doc: dict[str, Any]) -> Response:
    """The fake policy, except that an item whose subject id is "bad" comes back as the service's
    per-item error (a 400 inside a 200 batch)."""
    out = []
    for e in doc["evaluations"]:
        if e["subject"]["id"] == "bad":
            err = {"status": 400, "message": "evaluations[1].subject.type: bad"}
            out.append({"decision": True, "context": {"revision": 1, "errors": [err["message"]], "error": err}})
        else:
            out.append(verdict(e))
    return Response(200, msgspec.json.encode({"evaluations": out}))


class MockTransport:
    def __init__(self, handler: Handler | None = None, *, revision: int = 1) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.revision = revision
        self.allow = True  # False: the policy now denies everything (a change to test caches against)
        self.handler = handler or self.policy  # tests swap it mid-test (a service that changes)

    async def policy(self, url: str, body: dict[str, Any]) -> Response:
        if url.endswith("/evaluation"):
            return Response(200, msgspec.json.encode(verdict(body, self.revision, self.allow)))
        out = [verdict(e, self.revision, self.allow) for e in body["evaluations"]]
        return Response(200, msgspec.json.encode({"evaluations": out}))

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:
        doc = msgspec.json.decode(body)
        self.calls.append((url, doc, dict(headers)))
        async with asyncio.timeout(timeout):
            return await self.handler(url, doc)

    async def aclose(self) -> None:
        return None

    @property
    def checks_sent(self) -> int:
        return sum(len(d["evaluations"]) if u.endswith("evaluations") else 1 for u, d, _ in self.calls)
