"""Services under test, each in its own process pinned to the server core, on a private Valkey and SQLite."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from meshauth.bench.loadgen import SERVER_CORE, pinned


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], health_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m …args`` pinned to the server core until the block ends."""
    proc = subprocess.Popen(
        pinned([sys.executable, *args], SERVER_CORE), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(health_url, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
