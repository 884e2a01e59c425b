"""Real processes for the authz-mode failure tests: a policy server on a fixed port that can be
stopped, killed and restarted, the auth service served in authz mode, and a small load generator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from meshauth.local.health import wait_healthy
from tests.client.served import ADMIN_TOKEN, DECISION_TOKEN
from tests.served import ADMIN, Served, call, free_port, serve

ROUTES = """
routes:
  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}
  - {method: DELETE, path: "/documents/{id}", action: delete, resource: {type: Document, id: "{id}"}}
"""
POLICIES = """
@id("svc-reads") permit(principal == Client::"svc", action == Action::"read", resource);
@id("no-secret") forbid(principal, action, resource == Document::"secret");
"""
SECRET = "authz-failure-client-secret"


class PolicyProcess:
    """``python -m meshauth.policy.server`` on one port for its whole life, in its own process group
    (granian serves from worker processes: signals go to the group)."""

    def __init__(self, var: Path) -> None:
        self.var = var
        var.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")},
            "MESHAUTH_VAR_DIR": str(self.var),
            "MESHAUTH_ADMIN_TOKEN": ADMIN_TOKEN,
            "MESHAUTH_POLICY_PORT": str(self.port),
            "MESHAUTH_DATABASE_URL": f"sqlite:///{self.var}/policy.db",
            "MESHAUTH_DECISION_API_TOKENS": json.dumps([DECISION_TOKEN]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth.policy.server"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_healthy(self.url + "/healthz", self.proc, timeout=30, name="the policy server")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def push(self, text: str) -> int:
        body = json.dumps({"policies": text, "activate": True}).encode()
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
        status, raw = call("POST", self.url + "/admin/stores/default/policies", body=body, headers=headers)
        assert status == 201, raw
        revision: int = json.loads(raw)["revision"]
        return revision


@contextmanager
def policy_process(var: Path) -> Iterator[PolicyProcess]:
    pdp = PolicyProcess(var)
    pdp.start()
    try:
        pdp.push(POLICIES)
        yield pdp
    finally:
        pdp.kill()


@contextmanager
def served_gate(var: Path, valkey_url: str, policy_url: str, **env: str) -> Iterator[Served]:
    var.mkdir(parents=True, exist_ok=True)
    routes = var / "routes.yaml"
    routes.write_text(ROUTES)
    with serve(
        "auth",
        "asgi",
        var,
        valkey_url,
        MESHAUTH_ROUTES_FILE=str(routes),
        MESHAUTH_POLICY_URLS=json.dumps([policy_url]),
        MESHAUTH_POLICY_DECISION_TOKEN=DECISION_TOKEN,
        **env,
    ) as served:
        yield served


def client_token(gate: Served) -> str:
    body = json.dumps(
        {"client_id": "svc", "client_secret": SECRET, "scopes": ["read"], "grant_types": ["client_credentials"]}
    ).encode()
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    status, raw = call("POST", gate.url + "/admin/clients", body=body, headers=headers)
    assert status == 201, raw
    form = f"grant_type=client_credentials&client_id=svc&client_secret={SECRET}".encode()
    status, raw = call(
        "POST", gate.url + "/oauth2/token", body=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, raw
    token: str = json.loads(raw)["access_token"]
    return token


def breaker_state(gate: Served) -> int:
    """0 closed, 1 half-open, 2 open (``meshauth_client_breaker_state``), or -1 when /metrics is slow."""
    try:
        _status, body = call("GET", gate.url + "/metrics", timeout=2)
    except OSError:
        return -1
    for line in body.decode().splitlines():
        if line.startswith("meshauth_client_breaker_state{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


@dataclass
class Outcome:
    kind: str
    status: int
    reason: str | None
    seconds: float
    at: float  # time.monotonic() when sent


@dataclass
class Load:
    """Concurrent requests to the gate, each worker cycling through ``kinds`` until stopped."""

    gate: Served
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _n: int = 0

    async def one(self, http: aiohttp.ClientSession, kind: str) -> Outcome:
        method, path = {
            "hot": ("GET", "/documents/hot"),
            "secret": ("GET", "/documents/secret"),
            "delete": ("DELETE", "/documents/hot"),
        }.get(kind, ("GET", ""))
        if kind == "uncached":
            self._n += 1
            path = f"/documents/u-{self._n}-{time.monotonic_ns()}"
        started = time.monotonic()
        async with http.request(
            method, self.gate.url + "/ext_authz" + path, headers={"authorization": f"Bearer {self.token}"}
        ) as resp:
            await resp.read()
            out = Outcome(kind, resp.status, resp.headers.get("x-meshauth-reason"), time.monotonic() - started, started)
        self.outcomes.append(out)
        return out

    async def run(self, kinds: tuple[str, ...], workers: int = 8) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def worker(offset: int) -> None:
                i = offset
                while not self._stop.is_set():
                    await self.one(http, kinds[i % len(kinds)])
                    i += 1
                    await asyncio.sleep(0.005)  # ~100-200 req/s per worker: load, not saturation

            await asyncio.gather(*(worker(i) for i in range(workers)))

    def stop(self) -> None:
        self._stop.set()
