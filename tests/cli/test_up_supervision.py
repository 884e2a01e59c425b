"""``meshauth up`` supervises its children: Valkey, the services, and (through granian) their workers.

One stack is started for the module; each test breaks one thing, watches it recover, and leaves the
stack healthy for the next. Every wait has a deadline, so a stack that does not recover fails fast.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from redis import Redis

from tests.cli.conftest import clean_env
from tests.served import free_port

RECOVERY_SECONDS = 30


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    out: Path
    var: Path
    auth: str
    redis_port: int

    def output(self) -> str:
        return self.out.read_text()

    def wait_for_output(self, text: str, *, after: int = 0, seconds: float = RECOVERY_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.output()[after:]:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"{text!r} not printed within {seconds}s:\n{self.output()}"
            time.sleep(0.1)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.auth + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def readyz(self, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
        status, body = self.get("/readyz", timeout)
        return status, (json.loads(body)["checks"] if body else {})

    def login(self) -> int:
        req = urllib.request.Request(
            self.auth + "/v1/sessions",
            data=(self.var / "demo-login.json").read_bytes(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return 0

    def wait_until_serving(self, since: float) -> float:
        """Seconds from ``since`` until a login succeeds and /readyz is 200 (fails after RECOVERY_SECONDS)."""
        while True:
            if self.login() == 201 and self.readyz()[0] == 200:
                return time.monotonic() - since
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() - since < RECOVERY_SECONDS, f"not serving again:\n{self.readyz()}\n{self.output()}"
            time.sleep(0.2)

    def valkey(self) -> psutil.Process:
        """The valkey-server listening on the stack's Redis port."""
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "valkey-server":
                continue
            try:
                ports = {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                continue
            if self.redis_port in ports:
                return proc
        raise AssertionError(f"no valkey-server listens on {self.redis_port}:\n{self.output()}")

    def service(self, name: str) -> psutil.Process:
        """The ``meshauth serve NAME`` process."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if cmd[-3:-1] == ["serve", name] or cmd[-2:] == ["serve", name]:
                return child
        raise AssertionError(f"no serve {name} process:\n{self.output()}")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    port = free_port()
    env = clean_env(
        MESHAUTH_AUTH_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(free_port()),
        MESHAUTH_POLICY_PORT=str(free_port()),
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="1024",
    )
    out = tmp / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "up"], cwd=tmp, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    stack = Up(proc, out, tmp / "var", f"http://127.0.0.1:{port}", 0)
    try:
        stack.wait_for_output("Press Ctrl-C", seconds=90)
        stack.redis_port = int((tmp / "var" / "redis-url").read_text().strip().rsplit(":", 1)[1])
        yield stack
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_killed_valkey_is_restarted_on_the_same_port(up: Up) -> None:
    """kill -9 of Valkey: the stack says so, restarts it on the same port, and logins and /readyz recover."""
    assert up.wait_until_serving(time.monotonic()) < RECOVERY_SECONDS
    before = len(up.output())
    old = up.valkey()
    started = time.monotonic()
    old.kill()
    up.wait_for_output(f"restarted valkey on redis://127.0.0.1:{up.redis_port}", after=before)
    recovered = up.wait_until_serving(started)
    assert up.valkey().pid != old.pid
    assert f"redis://127.0.0.1:{up.redis_port}" in (up.var / "redis-url").read_text()
    print(f"login and /readyz recovered {recovered:.1f}s after kill -9 of valkey")


def test_sessions_and_revocations_survive_a_valkey_restart(up: Up) -> None:
    """What Valkey held before a kill -9 is there after the restart: sessions and revoked tokens."""
    up.wait_until_serving(time.monotonic())
    secret = (up.var / "demo-client-secret").read_text().strip()
    basic = "Basic " + base64.b64encode(f"demo:{secret}".encode()).decode()
    token_req = urllib.request.Request(
        up.auth + "/oauth2/token", data=b"grant_type=client_credentials", headers={"authorization": basic}
    )
    with urllib.request.urlopen(token_req, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    revoke = urllib.request.Request(
        up.auth + "/oauth2/revoke", data=f"token={token}".encode(), headers={"authorization": basic}
    )
    with urllib.request.urlopen(revoke, timeout=10) as resp:
        assert resp.status == 200
    assert up.login() == 201
    redis = Redis(port=up.redis_port, socket_timeout=5)
    before = {k for k in redis.scan_iter(match="meshauth:*") if b":revoked:" in k or b":session:" in k}
    assert any(b":revoked:" in k for k in before) and any(b":session:" in k for k in before)
    # The append-only file is fsynced every second in the background: wait for this connection's writes
    # to reach it (WAITAOF: local fsyncs, replicas, timeout ms) rather than for a second to pass.
    assert redis.waitaof(1, 0, 10_000) == [1, 0]
    old = up.valkey()
    old.kill()
    up.wait_until_serving(time.monotonic())
    after = set(redis.scan_iter(match="meshauth:*"))
    assert before <= after


def test_stopped_valkey_makes_readyz_fail_fast(up: Up) -> None:
    """SIGSTOP of Valkey: /readyz answers promptly that redis is failing instead of hanging."""
    up.wait_until_serving(time.monotonic())
    valkey = up.valkey()
    valkey.suspend()
    try:
        started = time.monotonic()
        status, checks = up.readyz(timeout=10)
        elapsed = time.monotonic() - started
        # Once the invalidation stream's blocked read times out, revocations say so too.
        deadline = time.monotonic() + 15
        while up.readyz(timeout=10)[1].get("revocations") == "ok":
            assert time.monotonic() < deadline, "revocations still reported ok while Redis is frozen"
            time.sleep(0.5)
    finally:
        valkey.resume()
    assert status == 503, checks
    assert checks["redis"].startswith("unavailable"), checks
    assert elapsed < 3, f"/readyz took {elapsed:.1f}s"
    print(f"/readyz answered 503 in {elapsed:.2f}s with Valkey stopped: {checks}")
    up.wait_until_serving(time.monotonic())


def test_killed_worker_is_respawned(up: Up) -> None:
    """kill -9 of an auth service worker: granian starts another and the service answers again."""
    up.wait_until_serving(time.monotonic())
    server = up.service("auth")
    [worker] = server.children()
    started = time.monotonic()
    worker.kill()
    recovered = up.wait_until_serving(started)
    print(f"auth served again {recovered:.1f}s after kill -9 of its worker")
    assert up.service("auth").pid == server.pid
    assert [w.pid for w in server.children()] != [worker.pid]


def test_killed_service_is_restarted(up: Up) -> None:
    """kill -9 of a whole service process: the stack says so and starts it again instead of stopping."""
    up.wait_until_serving(time.monotonic())
    before = len(up.output())
    server = up.service("auth")
    started = time.monotonic()
    os.kill(server.pid, signal.SIGKILL)
    up.wait_for_output("restarting auth", after=before)
    recovered = up.wait_until_serving(started)
    print(f"auth served again {recovered:.1f}s after kill -9 of its service process")
    assert up.service("auth").pid != server.pid


def test_a_second_stack_in_the_same_var_dir_is_refused(up: Up) -> None:
    """Two Valkeys must not share one append-only file: a second `up` in the same directory says so and exits."""
    env = clean_env(
        MESHAUTH_AUTH_PORT=str(free_port()),
        MESHAUTH_GRPC_PORT=str(free_port()),
        MESHAUTH_POLICY_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "meshauth", "up", "--no-demo"],
        cwd=up.var.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "in use by another `meshauth up`" in result.stderr
    assert (up.var / "redis-url").exists()
    up.wait_until_serving(time.monotonic())
