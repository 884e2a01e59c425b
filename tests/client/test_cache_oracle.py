"""Property: once a change has propagated (the client advanced to the new state), the cached client
answers exactly what a cache-off client answers — for policy activations and entity changes, with
or without the service reporting entities_version."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.client import PolicyClient, Response, State

SUBJECTS = ["a", "b", "c"]
Op = tuple[str, str]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.sampled_from(SUBJECTS)),
        st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(SUBJECTS)),
        st.tuples(st.just("activate"), st.just("")),
    ),
    max_size=40,
)


class World:
    """The policy service's truth: an entity set (who is granted) and a policy (invert or not)."""

    def __init__(self, report_ev: bool) -> None:
        self.granted = {"a"}
        self.inverted = False
        self.revision = 1
        self.ev = 1
        self.report_ev = report_ev

    def allowed(self, sid: str) -> bool:
        return (sid in self.granted) != self.inverted

    async def post(self, url: str, body: bytes, headers: Any, *, timeout: float) -> Response:
        doc = msgspec.json.decode(body)
        items = doc["evaluations"] if url.endswith("evaluations") else [doc]
        ctx: dict[str, Any] = {"revision": self.revision, "policies": [], "errors": []}
        if self.report_ev:
            ctx["entities_version"] = self.ev
        out = [{"decision": self.allowed(i["subject"]["id"]), "context": ctx} for i in items]
        return Response(200, msgspec.json.encode(out[0] if not url.endswith("evaluations") else {"evaluations": out}))

    async def aclose(self) -> None:
        return None


async def run(operations: list[Op], report_ev: bool) -> None:
    world = World(report_ev)
    # A wall clock that never moves: no entry expires, so only the state can retire it.
    # A generous deadline: a loaded machine must not turn a check into a deny (that is not a cache error).
    async with PolicyClient(["http://pdp"], transport=world, wall_clock=lambda: 1e12, timeout=10) as cached:
        for op, sid in operations:
            if op == "check":
                d = await cached.check({"type": "User", "id": sid}, "view", {"type": "Doc", "id": "d"})
                assert d.error is None, d
                assert d.decision == world.allowed(sid), (op, sid, d)
                continue
            if op == "activate":
                world.inverted = not world.inverted
                world.revision += 1
            else:
                (world.granted.add if op == "grant" else world.granted.discard)(sid)
                world.ev += 1
            cached.advance(State(world.revision, world.ev))  # the announcement has arrived


@settings(max_examples=150, deadline=None)
@given(ops)
def test_cached_answers_equal_the_oracle_when_the_service_reports_entities_version(operations: list[Op]) -> None:
    """With entities_version in every answer, no cached answer differs from the service's truth."""
    asyncio.run(run(operations, report_ev=True))


@settings(max_examples=150, deadline=None)
@given(ops)
def test_cached_answers_equal_the_oracle_when_only_announcements_carry_entities_version(
    operations: list[Op],
) -> None:
    """With entities_version only in announcements (today's service), answers still match the truth."""
    asyncio.run(run(operations, report_ev=False))
