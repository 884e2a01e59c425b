"""The Phase 1 topology on loopback: one ``meshauth up --auth-replicas 5 --policy-replicas 3`` per
module, with a policy store every replica serves (alice may view, nobody else may)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.served import stop

AUTH_REPLICAS, POLICY_REPLICAS = 5, 3
POLICY = 'permit(principal == User::"alice", action == Action::"view", resource);\n'
START_TIMEOUT = 180.0  # eight services starting together on a shared two-core machine


def _free_range(count: int, taken: set[int]) -> int:
    """The first of ``count`` consecutive free loopback ports, none of them in ``taken``."""
    for _ in range(200):
        first = random.randrange(20_000, 60_000)
        ports = range(first, first + count)
        if taken.intersection(ports):
            continue
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken.update(ports)
        return first
    raise RuntimeError("no free port range")


@dataclass(frozen=True)
class Topology:
    proc: subprocess.Popen[bytes]
    var: Path
    output: Path
    auth_ports: list[int]
    grpc_ports: list[int]
    policy_ports: list[int]
    admin_token: str

    @property
    def policy_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.policy_ports]

    def service(self, kind: str, port: int) -> psutil.Process:
        """The ``meshauth serve <kind>`` child of ``up`` listening on ``port`` (read from its environment)."""
        var = "MESHAUTH_AUTH_PORT" if kind == "auth" else "MESHAUTH_POLICY_PORT"
        for child in psutil.Process(self.proc.pid).children():
            try:
                if "serve" in child.cmdline() and kind in child.cmdline() and child.environ().get(var) == str(port):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise LookupError(f"no {kind} child on port {port}")


def decides(url: str, subject: str) -> bool:
    """The decision ``url`` gives on ``subject`` viewing a document; False when it cannot be reached."""
    body = json.dumps(
        {"subject": {"type": "User", "id": subject}, "action": {"name": "view"}, "resource": {"type": "Doc", "id": "d"}}
    ).encode()
    req = urllib.request.Request(
        url + "/stores/default/access/v1/evaluation", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return bool(json.load(resp)["decision"])
    except OSError:
        return False


def _start(root: Path) -> tuple[subprocess.Popen[bytes], Path, tuple[int, int, int]]:
    taken: set[int] = set()
    ports = (_free_range(AUTH_REPLICAS, taken), _free_range(AUTH_REPLICAS, taken), _free_range(POLICY_REPLICAS, taken))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        MESHAUTH_AUTH_PORT=str(ports[0]),
        MESHAUTH_GRPC_PORT=str(ports[1]),
        MESHAUTH_POLICY_PORT=str(ports[2]),
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="1024",
    )
    output = root / f"up-{ports[0]}.log"
    command = [sys.executable, "-m", "meshauth", "up", "--no-demo"]
    command += ["--auth-replicas", str(AUTH_REPLICAS), "--policy-replicas", str(POLICY_REPLICAS)]
    with output.open("w") as sink:
        # Its own process group: _stop kills whatever of it outlives it (services, Valkey).
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, output, ports


def _wait_started(proc: subprocess.Popen[bytes], output: Path) -> bool:
    """True once `up` says it is up; False if it exited first; AssertionError after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while "Press Ctrl-C" not in output.read_text():
        if proc.poll() is not None:
            return False
        if time.monotonic() >= deadline:
            _stop(proc)
            raise AssertionError(output.read_text())
        time.sleep(0.2)
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Ctrl-C: `up` stops its services, then the Valkey they use (killed, with all of them, past 30 s).
    stop(proc, sig=signal.SIGINT, grace=30)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """`meshauth up --auth-replicas 5 --policy-replicas 3`, up and serving one policy store."""
    root = tmp_path_factory.mktemp("phase1")
    # Ports are found free, then bound by the services a few seconds later: another test on this machine
    # may take one in between. Only that ("Address already in use") is retried, with fresh ports.
    for _attempt in range(3):
        proc, output, (auth, grpc, policy) = _start(root)
        if _wait_started(proc, output):
            break
        assert "Address already in use" in output.read_text(), output.read_text()
    else:
        raise AssertionError(output.read_text())
    try:
        deadline = time.monotonic() + START_TIMEOUT
        token = (root / "var" / "admin-token").read_text().strip()
        up = Topology(
            proc=proc,
            var=root / "var",
            output=output,
            auth_ports=[auth + i for i in range(AUTH_REPLICAS)],
            grpc_ports=[grpc + i for i in range(AUTH_REPLICAS)],
            policy_ports=[policy + i for i in range(POLICY_REPLICAS)],
            admin_token=token,
        )
        req = urllib.request.Request(
            up.policy_urls[0] + "/admin/stores/default/policies",
            data=POLICY.encode(),
            method="POST",
            headers={"content-type": "text/plain", "authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201
        # Every replica follows the store's revision on its own (policy_refresh_interval).
        for url in up.policy_urls:
            while not decides(url, "alice"):
                assert time.monotonic() < deadline, f"{url} never served the store"
                time.sleep(0.05)
        yield up
    finally:
        _stop(proc)
