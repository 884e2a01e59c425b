"""The policy question an authenticated request asks on a route, and a memo of prepared ones.

Question: subject from the credential — a client-credentials token (``sub`` equal to ``client_id``:
users and clients share one namespace; not the session client id) → ``{"type": "Client", "id": client_id}``;
any other token or a session → ``{"type": "User", "id": sub}``; the route's action and resource; context
``{"scope": [scope tokens], "client_id": client_id}``.

**The memo** (:class:`Questions`). A warm gate asks the same few questions again and again (a few
identities × a few paths), and building one — subject, context, validation, the canonical key
(``PolicyClient.question``) — cost ~3 µs of a warm check's ~5 µs in process, and ~12 µs of gate CPU
per request at 3,000 req/s (docs/performance.md, issue 10, "Warm path"). So each question is built
once and kept: the key's encoding stays the client's own (``_keys.request_key``), and L1 is still
the only cache of decisions — the memo holds questions, never answers.

It is keyed by the identity (``id``) of the two objects a request's question is made of — the
gate's allow :class:`~meshauth.auth.gate.Verdict` (cached per identity by ``gate.allow``) and the
route table's :class:`~meshauth.routes.RouteMatch` (cached per exact method and path by
``RouteTable.match``) — which costs one small tuple and no hashing of strings. Ids are only unique
among live objects, so each entry holds both objects (they cannot be freed, and their ids cannot
be reused, while it exists) and a lookup also checks ``is`` on both: an entry answers only the very
verdict and match it was made from, whose fields (frozen) are the whole question. A verdict or a
match made again (its own cache evicted it) is another object: a miss, never a wrong question.
An entry is made only for a match its table kept (``RouteMatch.kept``: the table remembers a path
from its second sighting, ``meshauth.admission``): a match it did not keep is a fresh object that no
later request brings again, so an entry keyed by it could never be read — a cold gate (ids in paths)
made one per request, 8 objects for the collector to walk each (0 now: tests/auth/test_authz_questions.py).
Bounded: at :data:`MAX_QUESTIONS` entries, or once its questions' keys hold :data:`MAX_QUESTION_BYTES`, it
starts again from empty (as the route table's memo). The byte bound is for hostile paths: one client
asking 16,384 distinct 4,000-character paths on a ``{id}`` route held ~140 MiB in the memo (each entry
keeps its route match alive, and the key repeats the path) on top of the route memo's ~66 MiB — past
the gate's memory limit; ordinary keys (~100–300 bytes) reach the count first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshauth.auth.gate import SESSION_CLIENT_ID, Verdict
from meshauth.client import PolicyClient, Question, Subject
from meshauth.routes import RouteMatch

__all__ = ["MAX_QUESTIONS", "MAX_QUESTION_BYTES", "Questions", "credential_context", "subject_for"]

MAX_QUESTIONS = 16_384
MAX_QUESTION_BYTES = 8 * 1024 * 1024  # of question keys held (the routes' resources are about as much again)


def subject_for(credential: str, subject: str, client_id: str) -> Subject:
    # SESSION_CLIENT_ID is reserved for clients, not users: a user named so gets session tokens with
    # sub == client_id, and is still that user (as ``meshauth.client.asgi`` reads the identity headers).
    if credential == "bearer" and subject == client_id and client_id != SESSION_CLIENT_ID:
        return Subject(type="Client", id=client_id)
    return Subject(type="User", id=subject)


def credential_context(client_id: str, scope: str) -> dict[str, Any]:
    """What the credential adds to a check's context (it wins over a caller's keys of the same name)."""
    return {"scope": scope.split(), "client_id": client_id}


class Questions:
    def __init__(self, client: PolicyClient) -> None:
        self._client = client
        # Each entry holds the question alone, not also the arguments it was made from: the question
        # keeps its own validated copies, and every object an entry holds is walked by the collector
        # (stop 23: a cold gate's memos were most of what its full collections walked).
        self._memo: dict[tuple[int, int], tuple[Verdict, RouteMatch, Question]] = {}
        self._bytes = 0  # of the keys held

    def __len__(self) -> int:
        return len(self._memo)

    def get(self, verdict: Verdict, route: RouteMatch) -> Question:
        """The question ``verdict`` (an allow: its headers are subject, client id, scope) asks on
        ``route`` (an ``authorize`` match). Raises what ``PolicyClient.question`` raises for a
        malformed one (the caller fails closed)."""
        key = (id(verdict), id(route))
        entry = self._memo.get(key)
        if entry is not None and entry[0] is verdict and entry[1] is route:
            return entry[2]
        question = self._ask(verdict, route)
        if not route.kept:  # a match its table did not keep is never seen again: nothing to remember
            return question
        size = len(question.key)
        if len(self._memo) >= MAX_QUESTIONS or self._bytes + size > MAX_QUESTION_BYTES:
            self._memo.clear()
            self._bytes = 0
        self._bytes += size
        self._memo[key] = (verdict, route, question)
        return question

    def _ask(self, verdict: Verdict, route: RouteMatch) -> Question:
        subject, client_id, scope = (value for _, value in verdict.headers)
        who = subject_for(verdict.credential, subject, client_id)
        resource: Mapping[str, str] = route.resource or {}
        return self._client.question(who, route.action, resource, credential_context(client_id, scope))
