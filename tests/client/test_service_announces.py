"""The policy service announces its writes (with Redis) and every cached client follows: a real
policy server, a real Valkey, and a property test against a cache-off oracle over activations and
entity changes. Without Redis the service serves as before (the other served tests)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauth.client import FULLY_CONSISTENT, PolicyClient, State, StateFollower, WarmConfig
from meshauth.client._metrics import WARMED
from meshauth.redis_client import connect
from tests.client.served import ADMIN_TOKEN, DECISION_TOKEN, policy_server, post, push

GRANTED = '@id("granted") permit(principal in Group::"granted", action == Action::"view", resource);'
INVERTED = (
    '@id("not-granted") permit(principal, action == Action::"view", resource) unless { principal in Group::"granted" };'
)
SUBJECTS = ["a", "b", "c"]
DOC = {"type": "Doc", "id": "d"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[str]:
    # A short warm window: activations by version stage, wait it, then activate (staged warming).
    pdp = tmp_path_factory.mktemp("pdp")
    with policy_server(pdp, MESHAUTH_REDIS_URL=valkey_url, MESHAUTH_POLICY_WARM_WINDOW="0.05") as (url, _proc):
        push(url, GRANTED)
        yield url


def get(url: str, path: str) -> dict[str, Any]:
    req = urllib.request.Request(url + path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


class Admin:
    """The admin API, tracking the state its writes return (what must propagate)."""

    def __init__(self, url: str) -> None:
        self.url = url
        info = get(url, "/admin/stores/default")
        self.revision = int(info["revision"])
        self.inverted = False
        self.staged: tuple[int, bool] | None = None  # (version, inverted) uploaded and not activated

    def set_user(self, sid: str, granted: bool) -> State:
        parents = [{"type": "Group", "id": "granted"}] if granted else []
        entity = {"uid": {"type": "User", "id": sid}, "attrs": {}, "parents": parents}
        status, body = post(self.url, "/admin/stores/default/entities", [entity], ADMIN_TOKEN)
        assert status == 200, body
        return State(self.revision, body["entities_version"])

    def toggle_policy(self) -> State:
        self.inverted = not self.inverted
        self.revision = push(self.url, INVERTED if self.inverted else GRANTED)["revision"]
        return State(self.revision)

    def stage(self) -> None:
        """Upload the other policy without activating it (announced as staged: clients warm for it)."""
        status, body = post(
            self.url,
            "/admin/stores/default/policies",
            {"policies": GRANTED if self.inverted else INVERTED, "activate": False},
            ADMIN_TOKEN,
        )
        assert status == 201, body
        self.staged = (body["version"], not self.inverted)

    def activate_staged(self) -> State:
        """Activate the version staged last (stage, warm window, activate); as toggle_policy when none."""
        if self.staged is None:
            self.stage()
        assert self.staged is not None
        version, self.inverted = self.staged
        status, body = post(self.url, f"/admin/stores/default/policies/{version}/activate", None, ADMIN_TOKEN)
        assert status == 200, body
        self.revision = body["revision"]
        return State(self.revision)


async def reached(client: PolicyClient, target: State, seconds: float = 5.0) -> None:
    """Poll (with a deadline) until the client's state holds ``target``: the change has propagated."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (client.state is not None and target.join(client.state) == client.state):
        assert loop.time() < deadline, f"client at {client.state}, never reached {target}"
        await asyncio.sleep(0.002)


async def test_activation_and_entity_write_reach_a_following_client(server: str, valkey_url: str) -> None:
    """An activation and an entity write through the admin API move a following client's cache to the
    new state by themselves (no TTL, no call): the next check says the new state and decision."""
    admin = Admin(server)
    base = admin.set_user("a", True)
    redis = connect(valkey_url)
    async with PolicyClient([server], token=DECISION_TOKEN, redis=redis, timeout=5) as client:
        follower = StateFollower(valkey_url, [client])
        await follower.start()
        try:
            await reached(client, base)
            first = await client.check({"type": "User", "id": "a"}, "view", DOC)
            assert (first.decision, first.entities_version) == (True, base.entities_version)
            assert (await client.check({"type": "User", "id": "a"}, "view", DOC)).source == "l1"
            revoked = admin.set_user("a", False)
            await reached(client, revoked)
            after_write = await client.check({"type": "User", "id": "a"}, "view", DOC)
            assert (after_write.decision, after_write.source) == (False, "service")
            assert after_write.entities_version == revoked.entities_version
            activated = admin.toggle_policy()
            await reached(client, activated)
            after_activation = await client.check({"type": "User", "id": "a"}, "view", DOC)
            assert (after_activation.decision, after_activation.revision) == (True, activated.revision)
            admin.toggle_policy()
        finally:
            await follower.stop()
    await redis.aclose()


async def test_an_activation_by_version_after_staging_is_no_cache_cliff(server: str, valkey_url: str) -> None:
    """Upload (staged: the client asks its hot questions of the new version), then activate it: the
    first checks at the new revision are L1 hits, with the new version's decisions."""
    admin = Admin(server)
    if admin.inverted:
        admin.toggle_policy()
    for sid, granted in zip(SUBJECTS, (True, False, True), strict=True):
        admin.set_user(sid, granted)
    redis = connect(valkey_url)
    cached = PolicyClient([server], token=DECISION_TOKEN, redis=redis, timeout=5, warming=WarmConfig(sample_every=1))
    oracle = PolicyClient([server], token=DECISION_TOKEN, cache=None, singleflight=False, timeout=5)
    follower = StateFollower(valkey_url, [cached])
    await follower.start()
    try:
        async with cached, oracle:
            await reached(cached, State(admin.revision))
            for sid in SUBJECTS:
                await cached.check({"type": "User", "id": sid}, "view", DOC)
            staged_before = WARMED.value("staged_service") + WARMED.value("staged_l2")
            admin.stage()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while WARMED.value("staged_service") + WARMED.value("staged_l2") < staged_before + len(SUBJECTS):
                assert loop.time() < deadline, "the client never warmed for the staged version"
                await asyncio.sleep(0.002)
            promoted = WARMED.value("staged")
            target = admin.activate_staged()
            await reached(cached, target)
            assert WARMED.value("staged") == promoted + len(SUBJECTS)
            for sid in SUBJECTS:
                subject = {"type": "User", "id": sid}
                got = await cached.check(subject, "view", DOC)
                truth = await oracle.check(subject, "view", DOC, consistency=FULLY_CONSISTENT)
                assert (got.source, got.revision, got.decision) == ("l1", target.revision, truth.decision), got
    finally:
        await follower.stop()
        if admin.inverted:
            admin.toggle_policy()
        await redis.aclose()


Op = tuple[str, str]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.sampled_from(SUBJECTS)),
        st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(SUBJECTS)),
        st.tuples(st.just("activate"), st.just("")),
        st.tuples(st.just("stage"), st.just("")),
        st.tuples(st.just("activate_staged"), st.just("")),
    ),
    min_size=1,
    max_size=25,
)


async def run(server: str, valkey_url: str, operations: list[Op]) -> None:
    admin = Admin(server)
    if admin.inverted:
        admin.toggle_policy()
    redis = connect(valkey_url)
    # Every check counted as hot (sample_every=1), so warming re-asks them at each new state.
    cached = PolicyClient([server], token=DECISION_TOKEN, redis=redis, timeout=5, warming=WarmConfig(sample_every=1))
    oracle = PolicyClient([server], token=DECISION_TOKEN, cache=None, singleflight=False, timeout=5)
    follower = StateFollower(valkey_url, [cached])
    await follower.start()
    try:
        async with cached, oracle:
            for op, sid in operations:
                if op == "check":
                    subject = {"type": "User", "id": sid}
                    got = await cached.check(subject, "view", DOC)
                    truth = await oracle.check(subject, "view", DOC, consistency=FULLY_CONSISTENT)
                    assert got.error is None and truth.error is None, (got, truth)
                    assert got.decision == truth.decision, (op, sid, got, truth)
                    continue
                if op == "stage":
                    admin.stage()
                    continue
                if op == "activate":
                    target = admin.toggle_policy()
                elif op == "activate_staged":
                    target = admin.activate_staged()
                else:
                    target = admin.set_user(sid, op == "grant")
                await reached(cached, target)  # the change has propagated (announcement, warming)
    finally:
        await follower.stop()
        if admin.inverted:
            admin.toggle_policy()
        await redis.aclose()


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=ops)
def test_cached_answers_equal_a_cache_off_oracle_on_the_real_service(
    server: str, valkey_url: str, operations: list[Op]
) -> None:
    """Once a change made through the admin API has reached the client (the service announced it),
    the cached client (L1, L2, warming) answers exactly what a cache-off client is answered."""
    asyncio.run(run(server, valkey_url, operations))


def test_a_service_whose_redis_is_unreachable_still_writes_and_decides(tmp_path: Path) -> None:
    """Redis configured but down: admin writes succeed (the announcement is logged and dropped) and
    decisions are served; nothing waits for Redis."""
    with policy_server(tmp_path, MESHAUTH_REDIS_URL="redis://127.0.0.1:9/0") as (url, _proc):
        push(url, GRANTED)
        status, body = post(
            url,
            "/admin/stores/default/entities",
            [{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [{"type": "Group", "id": "granted"}]}],
            ADMIN_TOKEN,
        )
        assert status == 200
        ask = {"subject": {"type": "User", "id": "a"}, "action": {"name": "view"}, "resource": DOC}
        status, decision = post(url, "/access/v1/evaluation", ask, DECISION_TOKEN)
    assert status == 200 and decision["decision"] is True
    assert decision["context"]["entities_version"] == body["entities_version"]


def test_a_replica_follows_another_replicas_announcement(tmp_path: Path, valkey_url: str) -> None:
    """Two service replicas on one database (no shared signal file, refresh tick 60 s): a write
    through one is announced, the other re-reads the database at once, and a client that moved to
    the new state soon gets its answer from the second replica instead of refusing it as older."""
    db = f"sqlite:///{tmp_path}/shared.db"
    common = {"MESHAUTH_REDIS_URL": valkey_url, "MESHAUTH_POLICY_REFRESH_INTERVAL": "60"}
    with policy_server(tmp_path / "one", MESHAUTH_DATABASE_URL=db, **common) as (one, _):
        push(one, GRANTED)
        with policy_server(tmp_path / "two", MESHAUTH_DATABASE_URL=db, **common) as (two, _):

            async def main() -> None:
                redis = connect(valkey_url)
                async with PolicyClient([two], token=DECISION_TOKEN, redis=redis, timeout=5) as client:
                    follower = StateFollower(valkey_url, [client])
                    await follower.start()
                    try:
                        first = await client.check({"type": "User", "id": "a"}, "view", DOC)
                        assert first.error is None and not first.decision
                        written = Admin(one).set_user("a", True)
                        await reached(client, written)
                        # The replica follows the same announcement concurrently: within a few ms of
                        # the client (2 s here, far below its 60 s refresh tick), it answers at the
                        # new state; until then the client refuses its older answers (fail closed).
                        loop = asyncio.get_running_loop()
                        deadline = loop.time() + 2.0
                        while True:
                            after = await client.check({"type": "User", "id": "a"}, "view", DOC)
                            if after.error is None or loop.time() > deadline:
                                break
                            await asyncio.sleep(0.005)
                    finally:
                        await follower.stop()
                await redis.aclose()
                assert after.error is None, after
                assert (after.decision, after.entities_version) == (True, written.entities_version)

            asyncio.run(main())
