"""Reading the dead-letter stream, and replaying a dead letter to the one group that set it aside.

A dead letter (``entries.settle``) holds the original partition stream, entry id, group, error, attempts
and payload ``d`` (one event, or a whole batch entry for a crash letter). A replay appends that payload
to the original partition as a new entry with the field ``g`` = the group, and deletes the dead letter,
in one script (only whoever deleted the letter appends it): consumers of *other* groups acknowledge such
an entry without handling it (``decode_entries``), so a replay reaches only the group that failed — the
other group (analytics, which counts by entry position) handled those events the first time and would
count them again. Refused, and left where they are: a payload that does not decode (it would only be set
aside again: a malformed entry) and a letter naming a stream that is not one of this bus's partitions
(the stream field is whatever was written there; a replay must not write to any other key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from meshauth.bus.entries import Entry, text
from meshauth.bus.events import MalformedEvent, decode_batch
from meshauth.bus.streams import StreamNames
from meshauth.redis_client import RedisConn

MAX_LIST = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_id: str  # the dead letter's own entry id
    stream: str
    entry_id: str
    group: str
    error: str
    attempts: str
    payload: bytes
    events: int | None  # None: the payload does not decode

    def as_json(self) -> dict[str, object]:
        return {
            "dead_id": self.dead_id,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "error": self.error,
            "attempts": self.attempts,
            "events": self.events,
            "bytes": len(self.payload),
        }


def _letter(dead_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    payload = fields.get(b"d", b"")
    try:
        events: int | None = len(decode_batch(payload))
    except MalformedEvent:
        events = None
    stream, entry_id, group, error, attempts = (
        text(fields.get(name, b"")) for name in (b"stream", b"id", b"group", b"error", b"attempts")
    )
    return DeadLetter(text(dead_id), stream, entry_id, group, error, attempts, payload, events)


async def read(redis: RedisConn, names: StreamNames, count: int, ids: list[str] | None = None) -> list[DeadLetter]:
    """The oldest ``count`` dead letters, or those with the given dead-letter ids (missing ones skipped)."""
    if ids:
        found: list[Entry] = []
        for dead_id in ids:
            found += cast(list[Entry], await redis.xrange(names.dead, dead_id, dead_id))
    else:
        found = cast(list[Entry], await redis.xrange(names.dead, count=count))
    return [_letter(dead_id, fields or {}) for dead_id, fields in found]


def refusal(letter: DeadLetter, names: StreamNames) -> str | None:
    """Why ``letter`` cannot be replayed, or None."""
    if letter.stream not in names.all():
        return f"its stream {letter.stream!r} is not a partition of {names.name}"
    if letter.group not in names.groups:
        return f"its group {letter.group!r} does not read {names.name}"
    if letter.events is None:
        return "its payload does not decode (a malformed entry: it would be set aside again)"
    return None


# The letter is deleted and its payload appended in one step, and only by whoever deleted it: two
# operators (or two ``replay --all``) racing append it once, not twice.
_REPLAY = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'd', ARGV[2], 'g', ARGV[3])
end
return false
"""


async def replay(redis: RedisConn, names: StreamNames, letter: DeadLetter) -> bytes | None:
    """Append ``letter``'s payload to its partition for its group alone and delete it; the new entry
    id, or None when the letter was gone by then (replayed or deleted meanwhile: nothing appended)."""
    new_id = await redis.eval(_REPLAY, 2, names.dead, letter.stream, letter.dead_id, letter.payload, letter.group)
    return cast(bytes, new_id) if new_id is not None else None
