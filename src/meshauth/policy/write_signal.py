"""A word in a file that the policy workers of one host map into memory: "someone just wrote".

A worker that writes (an upload, an activation, an entity change) stores a fresh random value in
it; every worker compares it with the value it last saw before each decision, and refreshes from
the database first when it changed. That gives read-your-writes across the workers of one host
without waiting for the refresh tick.

Why a shared mapping and not a ``stat`` of a file: the check runs on every decision, and a
``stat`` is a system call plus a result object — measured at ~10 % of a single decision's time
under full load. Reading 16 mapped bytes is a memory load. Torn reads (a reader overlapping a
writer) only ever look like a change, which costs one spare refresh.

The file is only ever grown, never truncated: reading a mapped page past the end of a truncated
file raises SIGBUS. If the file is deleted or replaced (``rm -r var/``), the workers that mapped
the old one notice on their refresh tick (:meth:`WriteSignal.check_file`) and map the new one;
until then they still follow writes through the tick.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

log = logging.getLogger(__name__)
SIZE = 16


class WriteSignal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._inode: tuple[int, int] | None = None
        self._seen = b""
        self._open()

    def _open(self) -> None:
        old = self._map
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                st = os.fstat(fd)
                if st.st_size < SIZE:
                    os.ftruncate(fd, SIZE)  # grows it (zero-filled); never shrinks an existing file
                self._map = mmap.mmap(fd, SIZE)
                self._inode = (st.st_dev, st.st_ino)
            finally:
                os.close(fd)
        except OSError:
            log.warning("cannot map the policy write signal %s; workers follow writes on the tick", self.path)
            self._map, self._inode = None, None
        else:
            self._seen = self._map[:SIZE]
        if old is not None:
            old.close()

    def changed(self) -> bool:
        """Whether another worker wrote since this one last looked (and note that it has now)."""
        m = self._map
        if m is None:
            return False
        value = m[:SIZE]
        if value == self._seen:
            return False
        self._seen = value
        return True

    def bump(self) -> None:
        """Tell the other workers that this one wrote; this worker is already current."""
        m = self._map
        if m is None:
            return
        value = os.urandom(SIZE)
        m[:SIZE] = value
        self._seen = value

    def check_file(self) -> bool:
        """On the refresh tick: map the file again if it was deleted or replaced. True when a new
        file was mapped (the caller should then refresh: writes signalled in it were missed)."""
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            current = None
        if current is not None and current == self._inode:
            return False
        self._open()
        return self._map is not None
