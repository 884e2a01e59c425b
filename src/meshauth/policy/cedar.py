"""The one module that talks to cedarpy: compile policies and schemas, parse entities, authorize.

It calls cedarpy's extension module (``cedarpy._internal``, pinned in constraints.txt) rather than
the public wrappers: the wrappers re-encode the context with ``json`` and build result objects per
decision, which doubles the cost of a decision (measured: ~35 µs → ~67 µs). Everything above this
module sees only the types defined here, so a cedarpy upgrade or swap touches this file alone.

Compiling runs on :func:`compile_thread`'s threads, never on the event loop or a default executor
thread: the engine recurses on the calling thread's stack, and a default thread's stack is whatever
the platform gives (8 MiB with glibc and an 8 MiB ``ulimit -s``, 2 MiB with ``ulimit -s unlimited``,
128 KiB on musl, 512 KiB on macOS). These threads get ``ENGINE_STACK_BYTES`` (address space, only
touched pages are memory), so the limits in ``source.py`` hold the same margin everywhere.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

import msgspec
from cedarpy import _internal

PolicySet = _internal.PolicySet
Schema = _internal.Schema
Entities = _internal.Entities

Uid = tuple[str, str]  # (entity type, entity id)

__all__ = [
    "Entities",
    "PolicySet",
    "Result",
    "Schema",
    "Uid",
    "ValidationIssue",
    "authorize",
    "compile_thread",
    "id_annotations",
    "parse_entities",
    "parse_policies",
    "parse_schema",
    "policies_json",
    "policy_ids",
    "schema_action_parents",
    "validate",
]


class Diagnostics(msgspec.Struct):
    reason: list[str] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)


class Result(msgspec.Struct):
    """One engine answer. ``decision`` is ``Allow``, ``Deny`` or ``NoDecision`` (a bad request)."""

    decision: str
    diagnostics: Diagnostics = msgspec.field(default_factory=Diagnostics)


class ValidationIssue(msgspec.Struct):
    policy_id: str = ""
    error: str = ""


class _Validation(msgspec.Struct):
    validation_passed: bool = False
    errors: list[ValidationIssue] = msgspec.field(default_factory=list)


_P = ParamSpec("_P")
_T = TypeVar("_T")
ENGINE_STACK_BYTES = 64 * 1024 * 1024
ENGINE_THREADS = 2


class _EngineThreads(Executor):
    """A fixed number of daemon threads, each started with ``stack_bytes`` of stack.

    ``ThreadPoolExecutor`` cannot be told a stack size (``threading.stack_size`` is process-wide and
    applies when a thread starts), so the threads are started here, once, under a lock.
    """

    def __init__(self, *, threads: int, stack_bytes: int) -> None:
        self._threads = threads
        self._stack_bytes = stack_bytes
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        self._start()
        future: Future[_T] = Future()
        self._queue.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            previous = threading.stack_size(self._stack_bytes)
            try:
                for n in range(self._threads):
                    threading.Thread(target=self._work, name=f"cedar-compile-{n}", daemon=True).start()
            finally:
                threading.stack_size(previous)
            self._started = True

    def _work(self) -> None:
        while True:
            self._run_one(*self._queue.get())

    @staticmethod
    def _run_one(future: Future[Any], call: Callable[[], Any]) -> None:
        # A call of its own, so that nothing of this item (its future, its result) stays referenced
        # from the thread's frame while it waits for the next one: a compiled policy set dropped by
        # every store must be freed, not kept until the next compile.
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller, as any executor does
            future.set_exception(exc)
        else:
            future.set_result(result)


_ENGINE = _EngineThreads(threads=ENGINE_THREADS, stack_bytes=ENGINE_STACK_BYTES)


async def compile_thread(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` (anything that parses or converts policy text or schemas) on an engine thread."""
    return await asyncio.get_running_loop().run_in_executor(_ENGINE, functools.partial(fn, *args, **kwargs))


_result_decoder = msgspec.json.Decoder(Result)
_validation_decoder = msgspec.json.Decoder(_Validation)
_json_encoder = msgspec.json.Encoder()


def parse_policies(text: str) -> PolicySet:
    """Compile Cedar policy text. Raises ``ValueError`` with the parser's message."""
    return PolicySet.from_str(text, release_gil=True)


def policies_json(text: str) -> str:
    """Cedar policy text as Cedar's JSON policy format (EST). Raises ``ValueError``."""
    json_text: str = _internal.policies_to_json_str(text)
    return json_text


def parse_schema(text: str, fmt: str) -> Schema:
    """``fmt`` is ``cedar`` (human-readable schema) or ``json``. Raises ``ValueError``."""
    if fmt == "json":
        return Schema.from_json_str(text, release_gil=True)
    return Schema.from_str(text, release_gil=True)


def parse_entities(document: str, schema: Schema | None) -> Entities:
    """A Cedar JSON entities document → a handle; with a schema, values are typed as it says.

    Raises ``ValueError`` when an entity is malformed or does not conform to the schema.
    """
    return Entities.from_json_str(document, schema)


def schema_action_parents(schema: Schema) -> dict[Uid, tuple[Uid, ...]]:
    """The action hierarchy a schema declares (``action view in [read]``), as direct parents."""
    rendered = msgspec.json.decode(str(Entities.from_json_str("[]", schema)))
    parents: dict[Uid, tuple[Uid, ...]] = {}
    for entity in rendered:
        uid = entity["uid"]
        parents[(uid["type"], uid["id"])] = tuple((p["type"], p["id"]) for p in entity.get("parents", ()))
    return parents


def id_annotations(text: str) -> dict[str, str]:
    """Cedar's positional policy id → its ``@id`` annotation, for policies that have one.

    Read from Cedar's JSON form: its typed nodes (``to_pst``) refuse some valid policies (an
    extension call with the wrong number of arguments, which only errors when evaluated).
    """
    tree = msgspec.json.decode(policies_json(text))
    return {
        pid: str(p["annotations"]["id"])
        for pid, p in (*tree.get("staticPolicies", {}).items(), *tree.get("templates", {}).items())
        if p.get("annotations", {}).get("id") is not None
    }


def policy_ids(text: str) -> list[str]:
    """Cedar's positional ids of every policy and template in ``text`` (``policy0``, …), in order."""
    tree = msgspec.json.decode(policies_json(text))
    return [*tree.get("staticPolicies", {}), *tree.get("templates", {})]


def validate(text: str, schema: Schema) -> list[ValidationIssue]:
    """Type-check policies against a schema; an empty list means they pass."""
    raw = _internal.validate_policies(text, schema, release_gil=True)
    result = _validation_decoder.decode(raw)
    return [] if result.validation_passed else result.errors


def request(principal: Uid, action: Uid, resource: Uid, context: dict[str, Any] | None) -> dict[str, Any]:
    """An engine request. An empty context is left out: encoding it costs ~10 µs per decision."""
    req: dict[str, Any] = {
        "principal": {"type": principal[0], "id": principal[1]},
        "action": {"type": action[0], "id": action[1]},
        "resource": {"type": resource[0], "id": resource[1]},
    }
    if context:
        req["context"] = _json_encoder.encode(context).decode()
    return req


def authorize(
    requests: list[dict[str, Any]], policies: PolicySet, entities: Entities, schema: Schema | None
) -> list[Result]:
    """Evaluate ``requests`` (from :func:`request`) with one engine call, answers in order. Answers
    alike but for their timing metrics are decoded once and share one (unchanged) :class:`Result`:
    most of a batch's answers are alike, and a key lookup costs a third of a decode."""
    raw = _internal.is_authorized_batch(requests, policies, entities, schema, False)
    if len(raw) == 1:
        return [_result_decoder.decode(raw[0])]
    alike: dict[str, Result] = {}
    out: list[Result] = []
    for r in raw:
        key = _answer_key(r)
        got = alike.get(key)
        if got is None:
            got = alike[key] = _result_decoder.decode(r)
        out.append(got)
    return out


def _answer_key(raw: str) -> str:
    """An answer's text without its ``metrics`` member (timings, different in every answer) when
    that member is the last one and flat (numbers only): what is cut holds nothing :class:`Result`
    reads. In any other shape the whole text (no sharing, never a wrong one). The marker cannot occur
    inside a JSON string (its quotes would be escaped there)."""
    i = raw.rfind(',"metrics":{')
    if i < 0 or raw.find("}", i) != len(raw) - 2:
        return raw
    return raw[:i]
