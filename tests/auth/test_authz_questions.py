"""The gate's memo of prepared policy questions (``auth/authz_questions.py``): one question per
(allow verdict, route match) object pair, never another identity's or another path's."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import meshauth.auth.authz_questions as questions
from meshauth.auth.authz_questions import Questions, credential_context, subject_for
from meshauth.auth.gate import Verdict, allow
from meshauth.client import PolicyClient, Subject
from meshauth.routes import parse_routes
from tests.client.mock import MockTransport

ROUTES = """
routes:
  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}
"""


def identity(subject: str, client_id: str = "app", scope: str = "read") -> Verdict:
    """An allow verdict made afresh (not from ``gate.allow``'s cache): a new object every time."""
    headers = (("x-meshauth-subject", subject), ("x-meshauth-client-id", client_id), ("x-meshauth-scope", scope))
    return Verdict(200, headers, "bearer")


@pytest.fixture
def client() -> PolicyClient:
    return PolicyClient(["http://pdp"], transport=MockTransport())


def expected(client: PolicyClient, verdict: Verdict, resource_id: str) -> bytes:
    subject, client_id, scope = (v for _, v in verdict.headers)
    return client.question(
        subject_for(verdict.credential, subject, client_id),
        "read",
        {"type": "Document", "id": resource_id},
        credential_context(client_id, scope),
    ).key


def test_a_pair_is_kept_once_its_match_is(client: PolicyClient) -> None:
    """A question on a match its table did not keep (a path seen once) is prepared and not kept — no
    later request brings that match object again; on a kept match (the path's second sighting on) it
    is kept, and answered from the memo from then on."""
    table = parse_routes(ROUTES)
    memo = Questions(client)
    v, once = allow("alice", "app", "read", "bearer"), table.match("GET", "/documents/d1")
    first = memo.get(v, once)
    assert not once.kept and len(memo) == 0
    kept = table.match("GET", "/documents/d1")
    second = memo.get(v, kept)
    assert kept.kept and second == first and len(memo) == 1
    assert memo.get(v, kept) is second
    made = client.question(
        Subject(type="User", id="alice"),
        "read",
        {"type": "Document", "id": "d1"},
        {"scope": ["read"], "client_id": "app"},
    )
    assert first.key == made.key == expected(client, v, "d1")


def test_a_client_credentials_token_asks_as_the_client(client: PolicyClient) -> None:
    v = identity("svc", client_id="svc", scope="read write")
    asked = Questions(client).get(v, parse_routes(ROUTES).match("GET", "/documents/d1"))
    made = client.question(
        Subject(type="Client", id="svc"),
        "read",
        {"type": "Document", "id": "d1"},
        {"scope": ["read", "write"], "client_id": "svc"},
    )
    assert asked.key == made.key


def test_an_entry_holds_the_question_alone(client: PolicyClient) -> None:
    """What an entry keeps alive is walked by every full collection (stop 23): the verdict and the
    match it was made from (shared with their own caches) and the question — nothing else."""
    memo = Questions(client)
    table = parse_routes(ROUTES)
    table.match("GET", "/documents/d1")
    v, route = allow("alice", "app", "read", "bearer"), table.match("GET", "/documents/d1")  # kept
    question = memo.get(v, route)
    (entry,) = memo._memo.values()
    assert entry == (v, route, question)


def test_pairs_asked_once_leave_nothing_behind(client: PolicyClient) -> None:
    """A thousand never-repeated paths (a cold gate): each gets its question, none is kept."""
    table = parse_routes(ROUTES)
    memo = Questions(client)
    v = allow("alice", "app", "read", "bearer")
    for i in range(1000):
        assert memo.get(v, table.match("GET", f"/documents/c{i}")).key == expected(client, v, f"c{i}")
    assert len(memo) == 0 and len(table._memo) == 0


def test_equal_verdicts_from_other_objects_get_the_same_question(client: PolicyClient) -> None:
    table = parse_routes(ROUTES)
    memo = Questions(client)
    route = table.match("GET", "/documents/d1")
    assert memo.get(identity("bob"), route) == memo.get(identity("bob"), route)


@pytest.mark.parametrize("bound", [1, 3, 64])
def test_reused_object_ids_never_give_another_identitys_question(
    client: PolicyClient, monkeypatch: pytest.MonkeyPatch, bound: int
) -> None:
    """Verdicts and matches made and dropped by the thousand (CPython reuses a freed object's id at
    once), with the memo starting again every ``bound`` entries: each gets its own question."""
    monkeypatch.setattr(questions, "MAX_QUESTIONS", bound)
    table = parse_routes(ROUTES)
    memo = Questions(client)
    for i in range(2000):
        v = identity(f"u{i % 7}")
        path = f"/documents/d{i % 5}"
        # A fresh table (and so a fresh match object) every few requests: ids of dropped matches recur.
        route = (table if i % 3 else parse_routes(ROUTES)).match("GET", path)
        asked = memo.get(v, route)
        assert asked.key == expected(client, v, f"d{i % 5}"), i
        assert len(memo) <= bound


def test_a_malformed_question_raises_for_the_caller_to_fail_closed(client: PolicyClient) -> None:
    """An empty subject cannot come from the gate (it refuses such tokens), but if it did: an error."""
    with pytest.raises(ValueError, match="subject"):
        Questions(client).get(identity(""), parse_routes(ROUTES).match("GET", "/documents/d1"))


def test_hostile_long_paths_cannot_make_the_memo_hold_much(client: PolicyClient) -> None:
    """One client asking 16,384 distinct 4,000-character paths: the memo holds at most a few MiB more
    than the route table's own memo (before: ~140 MiB more, past the gate's memory limit), and every
    question is still right."""
    table = parse_routes(ROUTES)
    v = allow("alice", "app", "read", "bearer")
    held: dict[bool, int] = {}
    for with_memo in (False, True):
        memo = Questions(client)
        gc.collect()
        tracemalloc.start()
        try:
            for i in range(questions.MAX_QUESTIONS):
                rid = f"{i:08d}{'x' * 4000}"
                route = table.match("GET", f"/documents/{rid}")
                if with_memo and i % 997 == 0:
                    assert memo.get(v, route).key == expected(client, v, rid)
                elif with_memo:
                    memo.get(v, route)
            gc.collect()
            held[with_memo] = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert held[True] - held[False] < 32 * 2**20, held
