"""Either service as ``meshauth serve`` runs it (granian, a real port), with its output kept in a file
so tests can read what the server logged (stdout and stderr: granian logs to stdout)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from meshauth.local.health import NotHealthy, wait_healthy

ADMIN = "served-transport-admin-token-0123456789"
# How long a served process may take to stop once asked: two granian workers on a loaded 2-core machine
# have taken over 10 s (tests/policy/conftest.py). Past it the process and its workers are killed.
STOP_GRACE = 30.0
# How long a served process may take to answer /healthz: over 30 s at load 20 with two busy loops (the
# main process had not yet logged spawning its worker), ~2 s quiet.
STARTUP = 60.0
_SPAWNED = re.compile(r"Spawning worker-(\d+)")
_STARTED = re.compile(r"Started worker-(\d+)(?!\d| runtime)")  # not "Started worker-1 runtime-1"


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, never one this process was given before: the kernel may hand the
    same ephemeral port to two binds in a row once the first socket is closed, and two services given
    one port collided (``meshauth up`` refused ports that overlap; tests/cli/test_up.py failed so)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


@dataclass(frozen=True)
class Served:
    service: str
    interface: str
    port: int
    grpc_port: int  # the auth service's ext_authz gRPC listener
    output: Path  # the server's stdout and stderr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.output.read_text(errors="replace")


@contextmanager
def serve(service: str, interface: str, var: Path, valkey_url: str, **env_extra: str) -> Iterator[Served]:
    """``python -m meshauth serve <service> --interface <interface>`` on a free port, fresh SQLite."""
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
    env.update(
        MESHAUTH_VAR_DIR=str(var),
        MESHAUTH_DATABASE_URL=f"sqlite:///{var}/m.db",
        MESHAUTH_REDIS_URL=valkey_url,
        MESHAUTH_ADMIN_TOKEN=ADMIN,
        MESHAUTH_AUTH_PORT=str(port),
        MESHAUTH_POLICY_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(grpc_port),
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="8",
    )
    env.update(env_extra)
    output = var / f"{service}-{interface}.log"
    with output.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "serve", service, "--interface", interface],
            env=env,
            stdout=err,  # granian logs to stdout; Python tracebacks may go to either
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its workers with it
        )
    served = Served(service, interface, port, grpc_port, output)
    try:
        try:
            wait_healthy(served.url + "/healthz", proc, timeout=STARTUP, name=f"meshauth serve {service}")
        except NotHealthy as exc:
            raise RuntimeError(f"{exc}:\n{served.log()}") from None
        wait_workers_started(output, proc)
        yield served
    finally:
        stop(proc)


def wait_workers_started(output: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until every worker granian logged spawning in ``output`` has logged that it started serving.

    Healthy means one worker answers; with two, the other may still be starting on a loaded machine.
    A test starts from a fully started server; a stop while a worker starts is its own test
    (tests/test_granian_stop.py: such a SIGTERM used to be lost, and the server never stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        text = output.read_text(errors="replace")
        if set(_SPAWNED.findall(text)) <= set(_STARTED.findall(text)):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"not every worker started within {timeout:.0f} s:\n{text}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, grace: float = STOP_GRACE) -> bool:
    """Ask ``proc`` to stop with ``sig``; past ``grace`` seconds kill it, and in any case kill whatever of
    its descendants outlived it, so that no server or worker of a test keeps running (or holding its
    port) after the test. Descendants are found as ``proc``'s process group when it leads one
    (``start_new_session``: a worker forked after this call is in it too, and an orphan stays in it),
    else as its children listed before the signal (once the parent is gone its orphans belong to init).

    True when ``proc`` stopped by itself within ``grace``."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
        leads_group = os.getpgid(proc.pid) == proc.pid
    except (psutil.Error, ProcessLookupError):
        family, leads_group = [], False
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(grace)
        in_time = True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        in_time = False
    if leads_group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for child in family:
        with contextlib.suppress(psutil.Error):
            child.kill()  # psutil checks the creation time: never a reused pid
    psutil.wait_procs(family, timeout=5)
    return in_time


def call(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(served: Served, name: str) -> float:
    """The sum of a metric's samples in the server's ``/metrics`` (0 when it has none)."""
    status, body = call("GET", served.url + "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            if sample.split("{", 1)[0] == name:
                total += float(value)
    return total


def raise_fd_limit(needed: int) -> None:
    """Let this test process hold ``needed`` sockets (up to the hard limit, which tests cannot raise)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
