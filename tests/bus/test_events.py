import gc
import os

import msgspec
import pytest
from pydantic import ValidationError

from meshauth.bus.events import (
    MAX_BATCH_BYTES,
    MAX_TIME,
    STAMP_BYTES,
    AuditEvent,
    MalformedEvent,
    audit,
    batch_size,
    batches,
    decode,
    decode_batch,
    encode,
    new_id,
    stamp,
    template,
)
from meshauth.config import Settings


def test_round_trip() -> None:
    """An event decodes to what was encoded, every field typed."""
    event = audit("gate.decision", subject="alice", decision="allow", status=200, latency_us=12)
    assert decode(encode(event)) == event


def test_ids_are_unique() -> None:
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_unknown_schema_version_is_malformed() -> None:
    """A reader refuses a schema version it does not know instead of guessing at fields."""
    data = msgspec.msgpack.encode({"id": "x", "time": 1.0, "type": "token.issued", "v": 2})
    with pytest.raises(MalformedEvent, match="schema version 2"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe not msgpack",
        msgspec.msgpack.encode({"id": "x", "time": 1.0, "type": "no.such.type"}),
        msgspec.msgpack.encode({"id": "x", "time": "yesterday", "type": "token.issued"}),
        msgspec.msgpack.encode({"time": 1.0, "type": "token.issued"}),
        msgspec.msgpack.encode({"id": "x", "time": 1.0, "type": "gate.decision", "decision": "maybe"}),
        msgspec.msgpack.encode([1, 2, 3]),
    ],
)
def test_malformed_payloads_raise_malformed_event(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(data)


def test_key_is_the_subject() -> None:
    assert AuditEvent(id="1", time=0.0, type="token.issued", subject="svc").key == "svc"


def test_events_are_not_tracked_by_the_collector() -> None:
    # A busy service makes one per request; untracked, they never count towards a collection.
    event = audit("gate.decision", subject="alice", decision="allow", status=200)
    assert not gc.is_tracked(event)
    assert not gc.is_tracked(decode(encode(event)))


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "gate.decision", "subject": "svc", "subject_type": "client", "client_id": "svc", "decision": "allow"},
        {"type": "gate.decision", "decision": "deny", "status": 401, "reason": "r" * 1024, "resource": "/ü/\x00/é"},
        {"type": "gate.decision", "resource": "x" * 70_000, "status": 65_535, "latency_us": 2**40},
        {"type": "policy.decision", "store": "s", "cache": "hit", "action": "read", "subject": "\u2603" * 40},
        {"type": "admin.action"},
    ],
)
def test_every_field_kind_round_trips(fields: dict[str, object]) -> None:
    """Short and long strings, non-ASCII, large ints, few fields: decoded as encoded."""
    event = AuditEvent(id=new_id(), time=1733443200.123456, **fields)  # type: ignore[arg-type]
    assert decode(encode(event)) == event


def test_new_ids_are_unique() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "gate.decision", "subject": "svc", "subject_type": "client", "client_id": "svc", "decision": "allow"},
        {"type": "gate.decision", "decision": "deny", "status": 401, "reason": "r" * 1024, "resource": "/ü/\x00/é"},
        {"type": "gate.decision", "resource": "x" * 70_000, "status": 65_535, "latency_us": 2**40},
        {"type": "gate.decision", "resource": "\udcff\ud800".encode("utf-8", "surrogatepass").decode("latin-1")},
        {"type": "policy.decision", "store": "s", "cache": "hit", "action": "read", "subject": "\u2603" * 40},
        {"type": "admin.action"},
    ],
)
def test_a_stamped_template_is_the_event_encode_writes(fields: dict[str, object]) -> None:
    """Stamped bytes decode to the struct with the id and time they were stamped with, and are the bytes
    ``encode`` writes for it (short and long strings, non-ASCII, NUL, large ints, few fields)."""
    tpl = template(AuditEvent(id="ignored", time=99.0, **fields))  # type: ignore[arg-type]
    assert tpl is not None
    for at in (0.0, 1733443200.123456, -1.5, float(2**60), float("nan")):
        data = stamp(tpl, at)
        event_id = msgspec.msgpack.decode(data)["id"]  # the codec's bytes, whatever the time
        assert data == encode(AuditEvent(id=event_id, time=at, **fields))  # type: ignore[arg-type]
        assert len(data) == len(tpl[0]) + len(tpl[1]) + STAMP_BYTES
        if 0 <= at < MAX_TIME:
            assert decode(data).id == event_id
        else:  # stamped as given, refused when read (no RFC 3339 form)
            with pytest.raises(MalformedEvent, match="time"):
                decode(data)


def test_stamped_ids_are_unique_and_new_ids_too() -> None:
    tpl = template(audit("gate.decision", subject="a"))
    assert tpl is not None
    ids = [decode(stamp(tpl, 1.0)).id for _ in range(5000)] + [new_id() for _ in range(5000)]
    assert len(set(ids)) == 10_000
    assert {len(i) for i in ids} == {32}  # audit_log.id is 40 wide


def test_a_forked_child_stamps_ids_of_its_own() -> None:
    """granian forks its workers: a child must not reuse its parent's prefix and counter."""
    tpl = template(audit("gate.decision", subject="a"))
    assert tpl is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id and a new_id, to the parent
        os.write(write, (decode(stamp(tpl, 1.0)).id + new_id()).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert status == 0 and len(child) == 64
    mine = decode(stamp(tpl, 1.0)).id
    assert child[:16] == child[32:48] != mine[:16]


def test_a_batch_holds_its_events_in_order_and_says_how_many() -> None:
    events = [audit("gate.decision", subject="s", status=i) for i in range(300)]
    (payload,) = batches([encode(e) for e in events])
    assert batch_size(payload) == 300
    assert decode_batch(payload) == events


def test_a_batch_past_the_byte_bound_is_split_in_order() -> None:
    events = [audit("gate.decision", subject="s", reason="r" * 10_000, status=i) for i in range(300)]
    payloads = batches([encode(e) for e in events])
    assert len(payloads) > 1
    assert all(len(p) <= MAX_BATCH_BYTES + 8 for p in payloads)
    assert [e for p in payloads for e in decode_batch(p)] == events
    assert sum(batch_size(p) for p in payloads) == 300


def test_a_payload_larger_than_any_producer_writes_is_malformed() -> None:
    """The producer refuses an event past ``bus_max_event_bytes`` (at most 1 MiB) and splits batches past
    ``MAX_BATCH_BYTES``, so no payload of its exceeds a batch header and 1 MiB. A neighbour's larger
    one (a 20 MiB reason here; up to Redis's 512 MiB) was decoded and stored: one audit_log row each
    that every page of GET /admin/audit then read and encoded whole, a thousand to a page."""
    biggest = audit("gate.decision", reason="r" * (MAX_BATCH_BYTES - 200))
    (payload,) = batches([encode(biggest)])
    assert len(payload) <= MAX_BATCH_BYTES
    assert decode_batch(payload) == [biggest]
    assert decode_batch(encode(biggest)) == [biggest]  # the form before batches
    most = Settings(bus_max_event_bytes=MAX_BATCH_BYTES).bus_max_event_bytes  # the setting's bound
    with pytest.raises(ValidationError):
        Settings(bus_max_event_bytes=most + 1)
    huge = encode(audit("gate.decision", reason="r" * (20 * MAX_BATCH_BYTES)))
    for data in (huge, batches([huge])[0]):
        with pytest.raises(MalformedEvent, match="larger than"):
            decode_batch(data)


def test_an_entry_of_one_event_reads_as_a_batch_of_one() -> None:
    """Entries written before batches (and by other writers) hold one event: still read."""
    event = audit("token.issued", subject="a")
    assert decode_batch(encode(event)) == [event]
    assert batch_size(encode(event)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xdd\x00\x00\x00\x02\x80",  # says two, holds one (and that one empty)
        b"\x91\xc1",  # an array of garbage
        msgspec.msgpack.encode([{"id": "x", "time": 1.0, "type": "nope"}]),
        msgspec.msgpack.encode([{"id": "x", "time": 1.0, "type": "token.issued", "v": 99}]),
        # Past audit_log's columns (id VARCHAR(40), status INTEGER, latency_us BIGINT): PostgreSQL
        # refused the row five times before the dead-letter stream, the partition waiting; SQLite
        # stored a long id, whose cursor then outgrew what GET /admin/audit takes back (128).
        msgspec.msgpack.encode([{"id": "x" * 41, "time": 1.0, "type": "token.issued"}]),
        msgspec.msgpack.encode([{"id": "x", "time": 1.0, "type": "gate.decision", "status": 2**31}]),
        msgspec.msgpack.encode([{"id": "x", "time": 1.0, "type": "gate.decision", "latency_us": 2**63}]),
    ],
)
def test_a_malformed_batch_is_refused_whole(payload: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_batch(payload)
