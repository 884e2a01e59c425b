"""Reproducer (stop 21, branch tests4): SIGTERM reaching `meshauth serve` while a granian worker is still
starting is lost, and the server never stops.

granian (2.8.9) forks its workers on Linux; a worker inherits the main process's Python SIGTERM handler
(which only flags the main's own loop) until it installs its own, after the app factory ran. The main
process SIGTERMs every worker and then joins them without a timeout (workers_kill_timeout unset), so a
worker that got its SIGTERM while starting keeps serving and the main process waits for it forever.

Run: PYTHONPATH=src python bench/adhoc/stop21-tests4/sigterm_while_a_worker_starts.py
Prints whether the server stopped within 20 s of SIGTERM; it kills the process group in any case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="sigterm-starting-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
    env.update(
        MESHAUTH_VAR_DIR=str(var),
        MESHAUTH_POLICY_PORT=str(port),
        MESHAUTH_DATABASE_URL=f"sqlite:///{var}/m.db",
        MESHAUTH_ADMIN_TOKEN="reproducer-admin-token-0123456789",
        MESHAUTH_POLICY_WORKERS="2",
    )
    log = var / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "serve", "policy"], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while "Spawning worker-2" not in log.read_text():  # both workers forked, neither started yet
            time.sleep(0.01)
        proc.terminate()
        try:
            proc.wait(20)
            print(f"stopped {proc.returncode}: the SIGTERM came after the workers had started (try again)")
        except subprocess.TimeoutExpired:
            print("NOT stopped 20 s after SIGTERM; granian's log:\n" + log.read_text())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


if __name__ == "__main__":
    main()
