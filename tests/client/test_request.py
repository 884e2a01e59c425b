"""A check's arguments as the client keeps them (``_request.py``): what is cached under a question's key
is the answer to that very question, whatever the caller does with its objects afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from meshauth.client import PolicyClient, Response
from meshauth.wire import Subject
from tests.client.mock import MockTransport


async def by_role(url: str, doc: dict[str, Any]) -> Response:
    """The service: allow only a context whose ``req.role`` is ``admin``."""
    items = doc["evaluations"] if url.endswith("evaluations") else [doc]
    out = [
        {"decision": i["context"]["req"]["role"] == "admin", "context": {"revision": 1, "policies": [], "errors": []}}
        for i in items
    ]
    return Response(200, msgspec.json.encode({"evaluations": out} if url.endswith("evaluations") else out[0]))


async def test_a_nested_context_changed_after_the_call_does_not_poison_the_cache() -> None:
    """The caller changes a nested dict of its context while the check waits in the batcher: the
    service is asked the question as it was when ``check`` was called (before: it was asked the
    changed one, an allow, kept in L1 under the original question's key, so the original question —
    a guest — was then answered allow from L1)."""
    user, doc = {"type": "User", "id": "u"}, {"type": "Doc", "id": "d"}
    async with PolicyClient(["http://pdp"], transport=MockTransport(by_role)) as c:
        await c.check(user, "view", {"type": "Doc", "id": "warm"}, {"req": {"role": "guest"}})  # a state known
        inner = {"role": "guest"}
        first = asyncio.ensure_future(c.check(user, "view", doc, {"req": inner}))
        await asyncio.sleep(0)  # one loop turn: the check has made its key and waits in the batcher
        inner["role"] = "admin"
        assert not (await first).decision
        again = await c.check(user, "view", doc, {"req": {"role": "guest"}})
    assert not again.decision


async def test_a_subject_struct_changed_after_the_call_does_not_poison_the_cache() -> None:
    """A ``Subject`` passed as a struct and then given another id: the original question's key holds
    the original subject's answer (before: the other subject's allow, answered from L1 to the first)."""
    doc = {"type": "Doc", "id": "d"}
    async with PolicyClient(["http://pdp"], transport=MockTransport()) as c:  # the mock denies ids "x…"
        await c.check({"type": "User", "id": "w"}, "view", doc)  # a state known
        subject = Subject("User", "xguest")
        first = asyncio.ensure_future(c.check(subject, "view", doc))
        await asyncio.sleep(0)  # one loop turn: the check has made its key and waits in the batcher
        subject.id = "admin"
        assert not (await first).decision
        again = await c.check(Subject("User", "xguest"), "view", doc)
    assert not again.decision


def role_in_properties(item: dict[str, Any]) -> bool:
    props = item["subject"].get("properties") or {}
    return (props.get("a") or {}).get("role") == "admin"


async def by_subject_role(url: str, doc: dict[str, Any]) -> Response:
    """The service: allow only a subject whose ``properties.a.role`` is ``admin``."""
    items = doc["evaluations"] if url.endswith("evaluations") else [doc]
    out = [{"decision": role_in_properties(i), "context": {"revision": 1, "policies": [], "errors": []}} for i in items]
    return Response(200, msgspec.json.encode({"evaluations": out} if url.endswith("evaluations") else out[0]))


@pytest.mark.parametrize("shape", ["struct", "mapping"])
async def test_subject_properties_changed_after_the_call_do_not_poison_the_cache(shape: str) -> None:
    """As for the context, for a subject's properties: a ``Subject`` struct kept by reference, or a
    mapping's nested dict (before: both were answered allow from L1 for the guest)."""
    doc = {"type": "Doc", "id": "d"}

    def subject(inner: dict[str, str]) -> Any:
        if shape == "struct":
            return Subject("User", "u", {"a": inner})
        return {"type": "User", "id": "u", "properties": {"a": inner}}

    async with PolicyClient(["http://pdp"], transport=MockTransport(by_subject_role)) as c:
        await c.check({"type": "User", "id": "w"}, "view", doc)  # a state known
        inner = {"role": "guest"}
        first = asyncio.ensure_future(c.check(subject(inner), "view", doc))
        await asyncio.sleep(0)  # one loop turn: the check has made its key and waits in the batcher
        inner["role"] = "admin"
        assert not (await first).decision
        again = await c.check(subject({"role": "guest"}), "view", doc)
    assert not again.decision
