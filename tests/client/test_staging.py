"""Staged warming (``_staging.py``): answers asked of a version before its activation fill L1 at the
activation — only for exactly the version, base revision and entities version they were made at.

A property test against the service's truth with staging, uploads, entity writes and activations of
any version interleaved with checks, and the cases one by one; the service here is a model of the
real one's staged answers (the real service: ``test_service_announces.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from meshauth.client import PolicyClient, Response, State, StateFollower, WarmConfig, announce
from meshauth.client._announcements import KIND_ACTIVATED, KIND_STAGED, names
from meshauth.client._metrics import WARMED

SUBJECTS = ["a", "b", "c", "d"]
DOC = {"type": "Doc", "id": "d"}
WARM = WarmConfig(sample_every=1)


class World:
    """The service's truth: versions (each a policy: allow the granted, or the others), the active
    one, the entities; staged answers as the real service gives them (``policy/staged.py``)."""

    def __init__(self) -> None:
        self.versions: list[bool] = [False]  # version n + 1 inverted or not
        self.active = 1
        self.granted = {"a"}
        self.revision = 1
        self.ev = 1
        self.staged_calls = 0
        self.tamper: str | None = None  # how staged answers are spoiled (a buggy or hostile service)
        self.strict = False  # a store setting (attribute precedence, schema): its change is a revision

    def allowed(self, sid: str, version: int) -> bool:
        if self.strict and sid == "c":
            return False
        return (sid in self.granted) != self.versions[version - 1]

    async def post(self, url: str, body: bytes, headers: Any, *, timeout: float) -> Response:
        doc = msgspec.json.decode(body)
        items = doc["evaluations"] if url.endswith("evaluations") else [doc]
        staged = (doc.get("options") or {}).get("meshauth_staged_version")
        if staged is not None:
            self.staged_calls += 1
            if not 1 <= staged <= len(self.versions):
                return Response(400, b'{"error": "invalid_staged_version"}')
        version = staged or self.active
        out = []
        for i in items:
            ctx: dict[str, Any] = {"revision": self.revision, "entities_version": self.ev, "policies": []}
            if staged is not None:
                ctx.update(revision=-1, staged_version=staged, staged_on=self.revision)
                if self.tamper == "active_revision":
                    ctx["revision"] = self.revision
                elif self.tamper == "other_version":
                    ctx["staged_version"] = staged + 1
                elif self.tamper == "no_base":
                    del ctx["staged_on"]
            out.append({"decision": self.allowed(i["subject"]["id"], version), "context": ctx})
        if url.endswith("evaluations"):
            return Response(200, msgspec.json.encode({"evaluations": out}))
        return Response(200, msgspec.json.encode(out[0]))

    async def aclose(self) -> None:
        return None


def client_for(world: World) -> PolicyClient:
    # A wall clock that never moves: nothing expires, only the state retires an entry.
    return PolicyClient(["http://pdp"], transport=world, wall_clock=lambda: 1e12, timeout=10, warming=WARM)


async def ask_all(client: PolicyClient, world: World) -> list[str]:
    sources: list[str] = []
    for sid in SUBJECTS:
        d = await client.check({"type": "User", "id": sid}, "view", DOC)
        assert d.error is None, d
        assert d.decision == world.allowed(sid, world.active), (sid, d)
        assert d.revision == world.revision, d
        sources.append(d.source)
    return sources


async def settle() -> None:
    """Let the staging task run (the mock answers at once: a few loop turns finish it)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def reached(client: PolicyClient, world: World) -> None:
    """Until the client is at the world's state: the change has propagated (without staged answers
    the reactive warming of ``_tracking.py`` adopts an activation when its loop is done)."""
    target = State(world.revision, world.ev)
    for _ in range(1000):
        if client.state == target:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"client at {client.state}, never reached {target}")


async def activate(client: PolicyClient, world: World, version: int) -> None:
    """As the service: the revision bumps with nothing else, then both announcements."""
    world.revision += 1
    world.active = version
    state = State(world.revision, world.ev)
    client.activated(state, version)
    client.announced(state)
    await reached(client, world)


Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.integers(0, 3)),
        st.tuples(st.just("check_all"), st.just(0)),
        st.tuples(st.sampled_from(["grant", "revoke"]), st.integers(0, 3)),
        st.tuples(st.just("configure"), st.just(0)),
        st.tuples(st.just("upload"), st.integers(0, 1)),
        st.tuples(st.just("stage"), st.integers(1, 4)),
        st.tuples(st.just("activate"), st.integers(1, 4)),
        st.tuples(st.just("activate_staged"), st.just(0)),  # the version staged last
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=40,
)


async def run(operations: list[Op]) -> None:
    world = World()
    world.versions += [True, False]  # versions 2 and 3 uploaded already (not staged yet)
    last = 2
    async with client_for(world) as client:
        client.advance(State(world.revision, world.ev))
        for op, n in operations:
            if op == "check":
                sid = SUBJECTS[n]
                d = await client.check({"type": "User", "id": sid}, "view", DOC)
                assert d.error is None, d
                assert d.decision == world.allowed(sid, world.active), (op, sid, d, world.__dict__)
            elif op == "check_all":
                await ask_all(client, world)
            elif op == "configure":  # a new revision that is no activation: staged answers are off
                world.strict = not world.strict
                world.revision += 1
                client.announced(State(world.revision, world.ev))
                await reached(client, world)
            elif op in ("grant", "revoke"):
                (world.granted.add if op == "grant" else world.granted.discard)(SUBJECTS[n])
                world.ev += 1
                client.announced(State(world.revision, world.ev))
                await reached(client, world)
            elif op == "upload":
                world.versions.append(bool(n))
                client.staged(last := len(world.versions))
            elif op == "stage":
                client.staged(last := n)  # maybe a version that does not exist: the service refuses it
                await settle()  # (an upload's staging runs on with the checks that follow it)
            elif op == "activate" and n <= len(world.versions):
                await activate(client, world, n)
            elif op == "activate_staged" and last <= len(world.versions):
                await activate(client, world, last)
            elif op == "settle":
                await settle()


@settings(max_examples=400, deadline=None)
@given(ops)
def test_staged_warming_never_answers_other_than_the_service(operations: list[Op]) -> None:
    """Staging, uploads, entity writes and activations of any version (re-activations, an old
    version again, one staged before an entity write) interleaved with checks: every answer is the
    service's truth for the active version and entities."""
    asyncio.run(run(operations))


middle = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.integers(0, 3)),
        st.tuples(st.sampled_from(["grant", "revoke"]), st.integers(0, 3)),
        st.tuples(st.just("configure"), st.just(0)),
        st.tuples(st.just("stage"), st.integers(1, 3)),
        st.tuples(st.just("activate"), st.integers(1, 3)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), middle)
def test_what_happens_between_staging_and_activation_never_shows(version: int, between: list[Op]) -> None:
    """The window that matters, shaped: checks, ``version`` staged, anything (entity writes, other
    versions staged or activated), ``version`` activated, every subject checked."""
    asyncio.run(run([("check_all", 0), ("stage", version), *between, ("activate", version), ("check_all", 0)]))


async def test_an_activation_after_staging_is_answered_from_l1() -> None:
    world = World()
    world.versions.append(True)
    async with client_for(world) as client:
        client.advance(State(world.revision, world.ev))
        assert await ask_all(client, world) == ["service"] * 4
        client.staged(2)
        await settle()
        assert world.staged_calls == 1
        before = WARMED.value("staged")
        await activate(client, world, 2)
        assert WARMED.value("staged") == before + 4
        assert await ask_all(client, world) == ["l1"] * 4  # no cliff: every hot answer is there


async def staged_then_entity_write(client: PolicyClient, world: World) -> None:
    """Version 2 staged for the hot set at the current state, then an entity write (not yet seen)."""
    client.advance(State(world.revision, world.ev))
    await ask_all(client, world)
    client.staged(2)
    await settle()
    world.granted.add("b")
    world.ev += 1


async def test_an_entity_write_between_staging_and_activation_leaves_it_cold() -> None:
    world = World()
    world.versions.append(True)
    async with client_for(world) as client:
        await staged_then_entity_write(client, world)
        client.announced(State(world.revision, world.ev))
        before = WARMED.value("staged")
        await activate(client, world, 2)
        assert WARMED.value("staged") == before  # nothing staged for that entities version
        await ask_all(client, world)


async def test_another_version_activated_meanwhile_leaves_it_cold() -> None:
    """Two admins: versions 2 and 3 staged on the same revision; 2 is activated, then 3 — on a
    revision 3 was not staged on."""
    world = World()
    world.versions += [True, False]
    async with client_for(world) as client:
        client.advance(State(world.revision, world.ev))
        await ask_all(client, world)
        client.staged(2)
        client.staged(3)
        await settle()
        await activate(client, world, 2)
        assert await ask_all(client, world) == ["l1"] * 4
        before = WARMED.value("staged")
        await activate(client, world, 3)
        assert WARMED.value("staged") == before
        await ask_all(client, world)


async def test_spoiled_staged_answers_are_not_kept() -> None:
    """Answers that do not say they are staged for this version on a base revision are dropped."""
    for tamper in ("active_revision", "other_version", "no_base"):
        world = World()
        world.versions.append(True)
        world.tamper = tamper
        async with client_for(world) as client:
            client.advance(State(world.revision, world.ev))
            await ask_all(client, world)
            client.staged(2)
            await settle()
            before = WARMED.value("staged")
            await activate(client, world, 2)
            assert WARMED.value("staged") == before, tamper
            await ask_all(client, world)


async def test_a_refused_version_stages_nothing() -> None:
    world = World()
    async with client_for(world) as client:
        client.advance(State(world.revision, world.ev))
        await ask_all(client, world)
        client.staged(7)
        await settle()
        assert world.staged_calls == 1  # one refused batch, then it stops
        world.versions += [True] * 6
        before = WARMED.value("staged")
        await activate(client, world, 7)
        assert WARMED.value("staged") == before
        await ask_all(client, world)


async def test_staging_off_asks_nothing() -> None:
    world = World()
    world.versions.append(True)
    async with PolicyClient(
        ["http://pdp"], transport=world, timeout=10, warming=WarmConfig(sample_every=1, stage=False)
    ) as client:
        await ask_all(client, world)
        client.staged(2)
        await settle()
        assert world.staged_calls == 0


class OldClient:
    """What an older client is to the follower: no ``staged``/``activated``."""

    store = "default"

    def __init__(self) -> None:
        self.states: list[State] = []

    def announced(self, state: State) -> None:
        self.states.append(state)

    def invalidate(self) -> None:
        return None


async def test_followers_ignore_what_they_do_not_know(valkey_url: str, redis: Redis) -> None:
    """Through a real Valkey: an older client ignores the new kinds; malformed ones of them are
    ignored by a new client; then a plain announcement still moves both."""
    world = World()
    world.versions.append(True)
    old = OldClient()
    got: asyncio.Queue[State] = asyncio.Queue()
    async with client_for(world) as client:
        follower = StateFollower(valkey_url, [client, old], on_state=lambda _s, st: got.put_nowait(st))
        await follower.start()
        try:
            stream = names("meshauth:")[0]
            for kind, bad in [
                (KIND_STAGED, '["default"]'),
                (KIND_STAGED, '["default", 0]'),
                (KIND_STAGED, '["default", 99999999999]'),
                (KIND_STAGED, "\xff not json"),
                (KIND_ACTIVATED, '["default", 5, null, 2]'),
                (KIND_ACTIVATED, '["default", "5", 1, 2]'),
                (KIND_ACTIVATED, '["default", 5, 1, [2]]'),
                (KIND_STAGED, '["default", 2]'),  # well formed: the old client ignores it
                (KIND_ACTIVATED, '["default", 9, 9, 2]'),  # nothing staged for it: no effect
            ]:
                await redis.xadd(stream, {"k": kind, "v": bad, "x": "0"})
            await announce(redis, "default", State(4, 1), activated=2)
            assert await asyncio.wait_for(got.get(), 5) == State(4, 1)
        finally:
            await follower.stop()
        assert old.states == [State(4, 1)]
        assert client.state == State(4, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"stage_keys": 0},
        {"stage_keys": 100_001},
        {"stage_keys": 1.5},
        {"stage_batch": 0},
        {"stage_batch": 1025},
        {"stage_batch": "64"},
        {"stage_budget": 0},
        {"stage_budget": -1.0},
        {"stage_budget": float("nan")},
    ],
)
def test_staging_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        WarmConfig(**bad)


async def test_an_entity_change_seen_before_the_activation_leaves_it_cold() -> None:
    """An entity write read the revision before an activation and announced (1, 2) after the
    activation's (2, 1) was made: the client will be at (2, 2) at once, so nothing is promoted at
    (2, 1) (it would only empty L1)."""
    world = World()
    world.versions.append(True)
    async with client_for(world) as client:
        await staged_then_entity_write(client, world)
        client.announced(State(1, world.ev))
        before = WARMED.value("staged")
        world.revision += 1
        world.active = 2
        client.activated(State(world.revision, 1), 2)
        assert WARMED.value("staged") == before
        client.announced(State(world.revision, world.ev))
        await reached(client, world)
        await ask_all(client, world)
