"""The producer's spool: an append-only file per process for events Redis could not take.

Records are ``<4-byte big-endian length><msgpack [stream, payload]>``, appended and fsync'd in batches
(one fsync per flush). Each process holds an exclusive ``flock`` on its own file, so a file whose lock
can be taken belongs to a process that is gone: the next producer to open the directory adopts it and
replays it before its own. Replay is in file order; a record torn by a crash (a short tail) ends the
file. The directory is bounded by ``max_bytes`` in total: ``append`` takes what fits and says how many.

Blocking file I/O: the producer calls these methods in a thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
_records = msgspec.msgpack.Decoder(tuple[str, bytes])
_encoder = msgspec.msgpack.Encoder()
Record = tuple[str, bytes]
READ_WINDOW = 4 * 1024 * 1024  # bytes read at a time; no record is longer


@dataclass
class _File:
    path: Path
    handle: BinaryIO
    offset: int = 0  # bytes already replayed
    size: int = 0


@dataclass
class Spool:
    directory: Path
    max_bytes: int
    _own: _File | None = None
    _adopted: list[_File] = field(default_factory=list)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("spool-*.bin"), key=lambda p: p.stat().st_mtime):
            handle = path.open("r+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # a live producer's
                continue
            size = path.stat().st_size
            if size == 0:
                path.unlink(missing_ok=True)
                handle.close()
                continue
            log.warning("adopting spool %s (%d bytes) of a producer that is gone; replaying it", path, size)
            self._adopted.append(_File(path, handle, size=size))
        path = self.directory / f"spool-{os.getpid()}-{os.urandom(4).hex()}.bin"
        handle = path.open("w+b")
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._own = _File(path, handle)

    def close(self) -> None:
        for f in [*self._adopted, *([self._own] if self._own else [])]:
            empty = f.offset >= f.size
            f.handle.close()
            if empty:
                f.path.unlink(missing_ok=True)
        self._adopted.clear()
        self._own = None

    @property
    def used(self) -> int:
        """Bytes held and not yet replayed."""
        files = [*self._adopted, *([self._own] if self._own else [])]
        return sum(f.size - f.offset for f in files)

    @property
    def pending(self) -> bool:
        return self.used > 0

    def append(self, records: list[Record]) -> int:
        """Append as many records as fit, fsync once; returns how many were written."""
        own = self._require_own()
        room = self.max_bytes - self.used
        chunks: list[bytes] = []
        taken = 0
        for record in records:
            body = _encoder.encode(record)
            if len(body) + _LEN.size > room:
                break
            room -= len(body) + _LEN.size
            chunks.append(_LEN.pack(len(body)) + body)
            taken += 1
        if chunks:
            own.handle.seek(own.size)
            data = b"".join(chunks)
            own.handle.write(data)
            own.handle.flush()
            os.fsync(own.handle.fileno())
            own.size += len(data)
        return taken

    def read(self, max_records: int) -> tuple[list[Record], int]:
        """The oldest records not yet replayed, and a token to pass to ``commit`` once they are in Redis."""
        f = self._current()
        if f is None:
            return [], 0
        f.handle.seek(f.offset)
        data = f.handle.read(min(f.size - f.offset, READ_WINDOW))
        records: list[Record] = []
        pos = 0
        while len(records) < max_records and pos + _LEN.size <= len(data):
            (length,) = _LEN.unpack_from(data, pos)
            if _LEN.size + length > READ_WINDOW:
                # No record is that long (a batch is at most ~1 MiB): the file is corrupt here, and what
                # follows cannot be framed again. Read on, it would return nothing consumed, forever.
                log.warning("spool %s: a record length of %d at byte %d; dropping the rest of the file (%d bytes)",
                            f.path, length, f.offset + pos, f.size - f.offset - pos)  # fmt: skip
                return records, f.size - f.offset
            end = pos + _LEN.size + length
            if end > len(data):
                if len(data) == f.size - f.offset:  # the whole rest was read: a torn tail (writer died mid-record)
                    log.warning("spool %s ends in a torn record; dropping its last %d bytes", f.path, len(data) - pos)
                    pos = len(data)
                break
            try:
                records.append(_records.decode(data[pos + _LEN.size : end]))
            except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec's for a str that is not UTF-8
                log.warning("skipping an unreadable spool record in %s", f.path)
            pos = end
        return records, pos

    def commit(self, consumed: int) -> None:
        f = self._current()
        if f is None:
            return
        f.offset += consumed
        if f.offset < f.size:
            return
        if f is self._own:
            f.handle.truncate(0)
            f.offset = f.size = 0
        else:
            f.handle.close()
            f.path.unlink(missing_ok=True)
            self._adopted.remove(f)

    def _current(self) -> _File | None:
        if self._adopted:
            return self._adopted[0]
        own = self._own
        return own if own is not None and own.offset < own.size else None

    def _require_own(self) -> _File:
        if self._own is None:
            raise RuntimeError("spool is not open")
        return self._own
