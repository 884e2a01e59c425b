"""Typed, versioned events and their codec (msgpack through msgspec: schema-checked both ways).

An event is one msgspec struct. Its ``v`` is the schema version: a reader refuses a version it does not
know (the entry goes to the dead-letter stream with the reason) rather than guess at fields. Adding an
optional field keeps ``v``; renaming or retyping one bumps it.

Ids are unique without coordination: 8 random bytes per process and a counter (32 hex digits). They de-duplicate
(the audit table's primary key), so an event published twice — a flush that timed out after Redis took
it, then replayed from the spool — is stored once.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
from typing import Annotated, Literal

import msgspec
import msgspec.structs

SCHEMA_VERSION = 1

AuditType = Literal[
    "gate.decision",
    "policy.decision",
    "token.issued",
    "token.refreshed",
    "token.revoked",
    "login.succeeded",
    "login.failed",
    "policy.uploaded",
    "policy.activated",
    "admin.action",
]
AUDIT_TYPES: tuple[str, ...] = AuditType.__args__  # type: ignore[attr-defined]
Decision = Literal["allow", "deny"]
SubjectType = str  # "user", "client", "admin", or a policy principal's entity type


# Unix seconds from 1970 to before the year 9999: a time readers can write as RFC 3339. An entry timed
# outside (a neighbour's XADD) is malformed: stored, a row in the year 33658 fitted audit_log's BIGINT,
# headed every newest-first page and made GET /admin/audit (and /admin/analytics) a 500 for good; NaN
# and infinity failed every handler attempt before the dead-letter stream. Checked when decoded.
MAX_TIME = 253_402_214_400.0  # 9999-01-01T00:00:00Z
Time = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_TIME)]
# And what audit_log's columns hold (id VARCHAR(40), status INTEGER, latency_us BIGINT; msgspec's int
# goes to 2^64): past them PostgreSQL refused the row on every attempt before the dead-letter stream,
# the partition waiting, and SQLite stored an id whose cursor GET /admin/audit would not take back.
Id = Annotated[str, msgspec.Meta(max_length=40)]
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Something that happened because of a request. ``key`` orders it (events with one key are
    handled in order): the subject, so one subject's history is in order.

    ``gc=False``: every field is a scalar, so an event can hold no reference cycle; untracked, the
    events a busy service makes do not push the collector into full collections (measured: a
    60-117 ms full collection within 10 s at 3,000 events/s, none with auditing off)."""

    id: Id
    time: Time  # Unix seconds
    type: AuditType
    v: int = SCHEMA_VERSION
    subject: str = ""
    subject_type: SubjectType = ""
    decision: Decision | None = None
    action: str = ""
    store: str = ""
    resource: str = ""
    client_id: str = ""
    status: Int32 = 0
    reason: str = ""
    latency_us: Int64 = 0
    cache: Literal["hit", "miss", ""] = ""

    @property
    def key(self) -> str:
        return self.subject


_ID_KEY = b"\xa2id\xd9\x20"  # "id" and a str8 header of 32 characters: what ``stamp`` writes before an id
_PREFIX = os.urandom(8).hex()
_ID_HEAD = _ID_KEY + _PREFIX.encode()
_counter = itertools.count()


def new_id() -> str:
    """A process-unique prefix and a counter (fixed width: ``stamp`` writes the same), ~0.1 µs."""
    return f"{_PREFIX}{next(_counter):016x}"


def reset_id_prefix() -> None:
    """A forked child must not reuse its parent's prefix (granian forks its workers)."""
    global _PREFIX, _ID_HEAD, _counter
    _PREFIX = os.urandom(8).hex()
    _ID_HEAD = _ID_KEY + _PREFIX.encode()
    _counter = itertools.count()


os.register_at_fork(after_in_child=reset_id_prefix)


def audit(type_: AuditType, **fields: object) -> AuditEvent:
    """An audit event stamped now, with a new id."""
    return AuditEvent(id=new_id(), time=time.time(), type=type_, **fields)  # type: ignore[arg-type]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AuditEvent)
_batch_decoder = msgspec.msgpack.Decoder(list[AuditEvent])

# A batch entry: the producer writes one stream entry per partition per flush, its ``d`` a msgpack
# array (array32 header, then the events' encodings back to back), not one entry per event: the
# Redis side of a flush is then a few XADDs instead of one per event (measured: Valkey's CPU per
# audited gate run 0.10 -> 0.03 s, the gate's p95 ratio 1.27x -> 1.12x in the same run; docs/
# performance.md "Stop 20"). Readers take both: an entry holding one event (a msgpack map) is read
# as a batch of one.
_BATCH_HEAD = struct.Struct(">BI")
MAX_BATCH_BYTES = 1024 * 1024  # a batch is split past this (the spool reads 4 MiB at a time)
# No producer's payload is larger: an event past ``bus_max_event_bytes`` (at most MAX_BATCH_BYTES) is
# refused at publish, batches are split past MAX_BATCH_BYTES. A larger one is a neighbour's (up to
# Redis's 512 MiB): decoded and stored, it was a row every GET /admin/audit page read and encoded whole.
MAX_PAYLOAD_BYTES = _BATCH_HEAD.size + MAX_BATCH_BYTES


class MalformedEvent(ValueError):
    """An entry that is not an event of a known schema version (the reason is the message)."""


def encode(event: AuditEvent) -> bytes:
    return _encoder.encode(event)


# A template: an event's encoding without its id and time, for hooks whose events repeat but for those
# two (the gate's: one client, a few paths); ``stamp`` writes the bytes ``encode`` would for the same
# event with a new id and a time, in a third of the time of building and encoding the struct (docs/
# performance.md, issue 12, "Stop 22"). Layout: msgspec writes the fields in declaration order, id and
# time first and always (no default), in a fixmap (at most 15 fields): (the map's first byte, the rest).
Template = tuple[bytes, bytes]
_BLANK_ID_TIME = b"\xa2id\xa0\xa4time\xcb" + bytes(8)
_pack_time = struct.Struct(">d").pack
STAMP_BYTES = len(_ID_KEY) + 32 + len(b"\xa4time\xcb") + 8  # what stamp adds to a template


def template(event: AuditEvent) -> Template | None:
    """``event``'s encoding without id and time, for :func:`stamp`; None if its layout is not the one
    ``stamp`` writes."""
    data = _encoder.encode(msgspec.structs.replace(event, id="", time=0.0))
    if not 0x80 <= data[0] <= 0x8F or data[1 : 1 + len(_BLANK_ID_TIME)] != _BLANK_ID_TIME:
        return None
    return data[:1], data[1 + len(_BLANK_ID_TIME) :]


def stamp(tpl: Template, at: float) -> bytes:
    """The encoded event of template ``tpl`` with a new id (:func:`new_id`'s form) and time ``at``."""
    return b"%b%b%016x\xa4time\xcb%b%b" % (tpl[0], _ID_HEAD, next(_counter), _pack_time(at), tpl[1])


# Not every malformed input is a DecodeError to msgspec: past its depth (a deeply nested unknown field,
# skipped by recursing) it raises RecursionError, and a string that is not UTF-8 a UnicodeDecodeError.
# Left to escape, either restarted the consumer on the entry again and again (the partitions' later
# entries waiting) until its delivery count made it a crash letter, with the wrong reason.
_TOO_DEEP = "nested too deeply (an unknown field past the decoder's depth)"


def decode(data: bytes) -> AuditEvent:
    try:
        event = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise MalformedEvent(str(exc)) from None
    except RecursionError:
        raise MalformedEvent(_TOO_DEEP) from None
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"a string is not UTF-8 ({exc})") from None
    if event.v != SCHEMA_VERSION:
        raise MalformedEvent(f"unknown schema version {event.v} (this reader knows {SCHEMA_VERSION})")
    return event


def batches(encoded: list[bytes]) -> list[bytes]:
    """``encoded`` events (in order) as batch payloads of at most ``MAX_BATCH_BYTES`` (or one event)."""
    if len(encoded) > 1 and sum(map(len, encoded)) > MAX_BATCH_BYTES:
        half = len(encoded) // 2
        return batches(encoded[:half]) + batches(encoded[half:])
    return [_BATCH_HEAD.pack(0xDD, len(encoded)) + b"".join(encoded)]


def batch_size(data: bytes) -> int:
    """How many events a payload holds (a batch's header says; anything else is one)."""
    return _BATCH_HEAD.unpack_from(data)[1] if data[:1] == b"\xdd" and len(data) >= _BATCH_HEAD.size else 1


def decode_batch(data: bytes) -> list[AuditEvent]:
    """The events of an entry's payload: a batch, or one event (as written before batches)."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedEvent(f"{len(data)} bytes: larger than any producer writes ({MAX_PAYLOAD_BYTES})")
    if not data or not (data[0] in (0xDC, 0xDD) or 0x90 <= data[0] <= 0x9F):
        return [decode(data)]
    try:
        events = _batch_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(str(exc)) from None
    except RecursionError:
        raise MalformedEvent(_TOO_DEEP) from None
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"a string is not UTF-8 ({exc})") from None
    for event in events:
        if event.v != SCHEMA_VERSION:
            raise MalformedEvent(f"unknown schema version {event.v} (this reader knows {SCHEMA_VERSION})")
    return events
