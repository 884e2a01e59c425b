"""``meshauth serve`` stops when told to, even while a worker is still starting.

granian forks its workers with the main process's SIGTERM handler, which in a worker only flags a loop
nobody runs; until the worker installs its own handler (after the app factory) a SIGTERM was lost, and
the main process waited for that worker forever (stop 21, bench/adhoc/stop21-tests4). Now a starting
worker takes the default action (it ends), and granian kills a worker still running
``WORKERS_KILL_TIMEOUT`` seconds after the stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from meshauth.config import Settings
from meshauth.granian_server import WORKERS_KILL_TIMEOUT, _server
from tests.served import ADMIN, free_port, stop


def test_the_server_kills_workers_that_outlive_a_stop() -> None:
    server = _server("meshauth.policy.app:create_app", "127.0.0.1", free_port(), 2, "rsgi", Settings(), 100)
    assert server.workers_kill_timeout == WORKERS_KILL_TIMEOUT
    assert 0 < WORKERS_KILL_TIMEOUT <= 25  # inside Kubernetes' default 30 s grace, after a 5 s preStop


def test_a_sigterm_while_a_worker_starts_stops_the_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
    env.update(
        MESHAUTH_VAR_DIR=str(tmp_path),
        MESHAUTH_POLICY_PORT=str(free_port()),
        MESHAUTH_DATABASE_URL=f"sqlite:///{tmp_path}/m.db",
        MESHAUTH_ADMIN_TOKEN=ADMIN,
        MESHAUTH_POLICY_WORKERS="2",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "serve", "policy"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "Spawning worker-2" not in log.read_text(errors="replace"):  # forked, not yet started
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        # The stop is the test: a lost SIGTERM left the main process waiting forever. Within the kill
        # timeout plus room for a loaded machine, the server (main process and both workers) is gone.
        try:
            proc.wait(WORKERS_KILL_TIMEOUT + 20)
        except subprocess.TimeoutExpired:
            raise AssertionError("not stopped after SIGTERM:\n" + log.read_text(errors="replace")) from None
        # Stopped by the signal, not by the backstop (granian logs each worker it has to kill).
        assert "refused to gracefully stop" not in log.read_text(errors="replace")
    finally:
        stop(proc, grace=1)
