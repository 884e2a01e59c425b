"""A word in a file that the policy workers of one host map into memory: "someone just wrote".

A worker that writes (an upload, an activation, an entity change) stores a fresh random value in
it; every worker compares it with the value it last saw before each decision, and refreshes from
the database first when it changed. That gives read-your-writes across the workers of one host
without waiting for the refresh tick.

Why a shared mapping and not a ``stat`` of a file: the check runs on every decision, and a
``stat`` is a system call plus a result object — measured at ~10 % of a single decision's time
under full load. Reading 16 mapped bytes is a memory load. Torn reads (a reader overlapping a
writer) only ever look like a change, which costs one spare refresh.

Failure modes, and why the code is shaped as it is:

- Writes go through ``pwrite``, never through the mapping, which is read-only. A store into a
  mapped page whose disk block is not allocated yet raises SIGBUS on a full disk; ``pwrite`` raises
  ``OSError`` instead, which is logged (the refresh tick still carries the write). The 16 bytes are
  written (allocated) when the file is created.
- Reading a mapped page past the end of the file raises SIGBUS, so the file is never truncated by
  meshauth. It has its own name (the previous releases' ``policy-signal`` was appended to and
  truncated, and may still be in ``var_dir``).
- If the file is deleted or replaced (``rm -r var/``), workers that mapped the old one notice on
  their refresh tick (:meth:`WriteSignal.check_file`) and map the new one.
- If it cannot be created (read-only ``var_dir``), there is no signal: workers follow writes on the
  tick. One warning per failure, not one per tick.
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
        self._fd: int | None = None  # open for writing, when the file is writable
        self._map: mmap.mmap | None = None
        self._inode: tuple[int, int] | None = None
        self._seen = b""
        self._failing = False
        self._open()

    def _open(self) -> None:
        self._close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                writable = True
            except PermissionError:  # another user's file: follow it, cannot announce
                fd = os.open(self.path, os.O_RDONLY)
                writable = False
            try:
                st = os.fstat(fd)
                if st.st_size < SIZE:
                    os.pwrite(fd, os.urandom(SIZE), 0)  # allocates the block: later pwrites need none
                self._map = mmap.mmap(fd, SIZE, prot=mmap.PROT_READ)
                self._inode = (st.st_dev, st.st_ino)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            self._close()
            if not self._failing:
                log.warning(
                    "cannot map the policy write signal %s (%s); workers follow writes on the tick", self.path, exc
                )
            self._failing = True
            return
        if writable:
            self._fd = fd
        else:
            os.close(fd)
        self._seen = self._map[:SIZE]
        self._failing = False

    def _close(self) -> None:
        if self._map is not None:
            self._map.close()
        if self._fd is not None:
            os.close(self._fd)
        self._map, self._fd, self._inode = None, None, None

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
        if self._fd is None:
            return
        value = os.urandom(SIZE)
        try:
            os.pwrite(self._fd, value, 0)
        except OSError as exc:
            log.warning(
                "cannot write the policy write signal %s (%s); other workers see it on the tick", self.path, exc
            )
            return
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
