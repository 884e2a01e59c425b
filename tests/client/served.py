"""A real policy server (granian, RSGI) in a subprocess, with its process handle (tests stop it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshauth.client import Response, Transport
from meshauth.local.health import wait_healthy

ADMIN_TOKEN = "client-test-admin-token"
DECISION_TOKEN = "client-test-decision-token-0123"


@contextmanager
def policy_server(var: Path, **env_extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "MESHAUTH_VAR_DIR": str(var),
        "MESHAUTH_ADMIN_TOKEN": ADMIN_TOKEN,
        "MESHAUTH_POLICY_PORT": str(port),
        "MESHAUTH_DATABASE_URL": f"sqlite:///{var}/m.db",
        "MESHAUTH_DECISION_API_TOKENS": json.dumps([DECISION_TOKEN]),
        **env_extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshauth.policy.server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: granian serves from worker processes, and SIGSTOP/SIGCONT must reach them.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/healthz", proc, timeout=30, name="the policy server")
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def post(url: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def push(url: str, text: str, store: str = "default") -> dict[str, Any]:
    status, body = post(url, f"/admin/stores/{store}/policies", {"policies": text, "activate": True}, ADMIN_TOKEN)
    assert status == 201
    result: dict[str, Any] = body
    return result


class Recording:
    """A real transport, recording each call's endpoint (``evaluation``/``evaluations``) and body size."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int]] = []

    @property
    def endpoints(self) -> list[str]:
        return [endpoint for endpoint, _ in self.calls]

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:
        self.calls.append((url.rsplit("/", 1)[1], len(body)))
        return await self.inner.post(url, body, headers, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()
