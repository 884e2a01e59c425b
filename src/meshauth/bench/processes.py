"""Services under test, each in its own process pinned to the server core, on a private Valkey and SQLite."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from meshauth.bench.loadgen import SERVER_CORE, pinned
from meshauth.local.health import wait_healthy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], health_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m …args`` pinned to the server core until the block ends."""
    proc = subprocess.Popen(
        pinned([sys.executable, *args], SERVER_CORE), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(health_url, proc, timeout=60.0)
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def service_env(var_dir: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        MESHAUTH_VAR_DIR=str(var_dir),
        MESHAUTH_DATABASE_URL=f"sqlite:///{var_dir / 'bench.db'}",
        MESHAUTH_REDIS_URL=redis_url,
        MESHAUTH_ADMIN_TOKEN="bench-admin-token",
    )
    env.update(extra)
    return env


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (granian serves from a worker process under the one started)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += process_tree(int(child))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of the server: the started process and its workers."""
    total = 0
    for p in process_tree(pid):
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        total += int(m.group(1)) if m else 0
    return total / 1024
