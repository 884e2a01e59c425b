"""``meshauth up`` runs the bus workers: a login made against the stack shows up in GET /admin/audit,
and ``meshauth bus status`` run in the stack's directory sees the workers' consumers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli.conftest import clean_env, meshauth
from tests.served import free_port


def _get_json(url: str, token: str) -> dict[str, object]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body: dict[str, object] = json.loads(resp.read())
        return body


def test_up_starts_the_workers_and_audit_events_reach_the_api(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        MESHAUTH_AUTH_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(free_port()),
        MESHAUTH_POLICY_PORT=str(free_port()),
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="1024",
    )
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "up"], cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        assert "bus workers      audit, analytics" in out.read_text()
        base = f"http://127.0.0.1:{port}"
        login = urllib.request.Request(
            base + "/v1/sessions",
            data=(tmp_path / "var" / "demo-login.json").read_bytes(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(login, timeout=5) as resp:
            assert resp.status == 201
        token = (tmp_path / "var" / "admin-token").read_text().strip()
        deadline = time.monotonic() + 30
        while True:
            events = _get_json(base + "/admin/audit?type=login.succeeded", token)["events"]
            if events:
                break
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        status = meshauth(tmp_path, "bus", "status")
        assert status.returncode == 0, status.stderr
        assert "group audit:" in status.stdout and "group analytics:" in status.stdout
        assert "consumer " in status.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, out.read_text()
