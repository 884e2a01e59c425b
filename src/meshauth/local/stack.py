"""Supervises the local stack: Valkey (embedded unless REDIS_URL), the auth and policy services.

Children are ``meshauth serve …`` processes sharing this process's settings through the environment,
and the embedded ``valkey-server``. A child that exits after start-up is started again, on the same
port, and the stack says so: the services reconnect to a restarted Valkey by themselves, and granian
already replaces a crashed worker inside a service, so restarting the one child that died keeps the
rest serving. Restarts are paced — the delay doubles from FIRST_RESTART_DELAY to MAX_RESTART_DELAY —
and a child that crashes MAX_CRASHES_IN_A_ROW times, each time within STABLE_SECONDS of being started,
stops the stack: something is persistently wrong and a person has to look.

During start-up nothing is restarted: a child that exits then (a port in use, say) ends ``up`` with
its reason, because a half-started stack is worse than none.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from meshauth.config import Settings
from meshauth.local.children import describe_exit, detach_from_terminal, kill_group
from meshauth.local.health import wait_healthy
from meshauth.local.valkey import EmbeddedValkey

READY_TIMEOUT = 60.0
READY_PATH = "/readyz"  # readiness; /healthz is liveness only
POLL_INTERVAL = 0.2  # seconds between looks at the children
FIRST_RESTART_DELAY = 0.5  # seconds
MAX_RESTART_DELAY = 30.0  # seconds
STABLE_SECONDS = 60.0  # a child up this long has recovered: its crash count starts again
MAX_CRASHES_IN_A_ROW = 5
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL for a service


def policy_available() -> bool:
    return importlib.util.find_spec("meshauth.policy.app") is not None


def say(message: str) -> None:
    print(f"meshauth up: {message}", file=sys.stderr, flush=True)


@dataclass
class Restarts:
    """Restart pacing for one child."""

    delay: float = FIRST_RESTART_DELAY
    crashes: int = 0  # crashes in a row, each within STABLE_SECONDS of its start
    started_at: float = field(default_factory=time.monotonic)
    due: float | None = None  # when the pending restart may run; None while the child runs

    def crashed(self, now: float) -> float:
        """Count a crash and schedule the restart; returns the delay before it."""
        if now - self.started_at >= STABLE_SECONDS:
            self.crashes, self.delay = 0, FIRST_RESTART_DELAY
        self.crashes += 1
        delay, self.delay = self.delay, min(self.delay * 2, MAX_RESTART_DELAY)
        self.due = now + delay
        return delay

    def started(self, now: float) -> None:
        self.started_at, self.due = now, None

    @property
    def given_up(self) -> bool:
        return self.crashes >= MAX_CRASHES_IN_A_ROW


@dataclass
class Supervised:
    """One child as the supervision loop sees it."""

    name: str
    start: Callable[[], str]  # (re)starts it, returns what to report; RuntimeError if it cannot
    exit_code: Callable[[], int | None]  # None while it runs
    cleanup: Callable[[], None]  # after it exited: end what it left behind
    restarts: Restarts = field(default_factory=Restarts)


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    valkey: EmbeddedValkey | None = None
    stopping: bool = False
    supervised: dict[str, Supervised] = field(default_factory=dict)

    def start_redis(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        valkey = EmbeddedValkey(self.settings.var_dir / "valkey")
        valkey.start()
        # Only once it runs: a start refused because another stack holds var/ must not clean up its files.
        self.valkey = valkey
        url = valkey.url
        self.settings.redis_url_file.parent.mkdir(parents=True, exist_ok=True)
        self.settings.redis_url_file.write_text(url + "\n")

        def restart() -> str:
            valkey.start()
            return f"restarted valkey on {valkey.url} (pid {valkey.pid}); the services reconnect by themselves"

        def cleanup() -> None:
            # A crashed valkey-server is reaped by exit_code(); stop() also clears the handle.
            valkey.stop()

        self.supervised["valkey"] = Supervised("valkey", restart, valkey.exit_code, cleanup)
        return url

    def spawn(self, name: str, *args: str, env: Callable[[dict[str, str]], dict[str, str]] | None = None) -> None:
        """Start ``meshauth <args>`` as ``name``; ``env`` makes the child's environment from the stack's
        (read at each (re)start, so a restart gets the same settings)."""

        def start() -> str:
            child_env = self.env if env is None else env(self.env)
            self.children[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "meshauth", *args], env=child_env, **detach_from_terminal()
            )
            return f"restarted {name} (pid {self.children[name].pid})"

        def exit_code() -> int | None:
            return self.children[name].poll()

        def cleanup() -> None:
            kill_group(self.children[name].pid)

        start()
        self.supervised[name] = Supervised(name, start, exit_code, cleanup)

    def wait_ready(self, name: str, base_url: str, *, timeout: float = READY_TIMEOUT) -> None:
        """Until ``name``'s ``/readyz`` answers 200: ready (its database and, for auth, Redis answer),
        not merely alive — "meshauth is up" must mean the services can serve."""
        wait_healthy(base_url + READY_PATH, self.children[name], timeout=timeout, name=name)

    def run_until_stopped(self) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        now = time.monotonic()
        for child in self.supervised.values():
            child.restarts.started(now)
        while not self.stopping:
            for child in self.supervised.values():
                code = self.supervise(child, time.monotonic())
                if code is not None:
                    return code
            time.sleep(POLL_INTERVAL)
        return 0

    def supervise(self, child: Supervised, now: float) -> int | None:
        """One supervision step (run_until_stopped takes one per child per poll): restart ``child`` if it
        died; an exit code when the stack must stop."""
        restarts = child.restarts
        if restarts.due is None:
            code = child.exit_code()
            if code is None:
                return None
            child.cleanup()
            delay = restarts.crashed(now)
            if restarts.given_up:
                times = f"{restarts.crashes} times in a row"
                say(f"{child.name} {describe_exit(code)}, {times}; stopping{self._hint(child)}")
                return code or 1
            say(f"{child.name} {describe_exit(code)}; restarting {child.name} in {delay:.1f}s")
        elif now >= restarts.due:
            try:
                report = child.start()
            except (RuntimeError, OSError) as exc:
                # A failed restart is a crash at once: it counts toward giving up.
                now = time.monotonic()
                restarts.started(now)
                delay = restarts.crashed(now)
                if restarts.given_up:
                    say(f"could not restart {child.name} ({exc}); stopping{self._hint(child)}")
                    return 1
                say(f"could not restart {child.name} ({exc}); trying again in {delay:.1f}s")
            else:
                restarts.started(time.monotonic())
                say(report)
        return None

    def _hint(self, child: Supervised) -> str:
        if child.name == "valkey" and self.valkey is not None:
            return f" (its log: {self.valkey.log_file})"
        return ""

    def stop(self) -> None:
        # Services first, then the Valkey they use.
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            kill_group(child.pid)
        if self.valkey is not None:
            self.valkey.close()
            self.settings.redis_url_file.unlink(missing_ok=True)


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MESHAUTH_REDIS_URL"] = redis_url
    env["MESHAUTH_VAR_DIR"] = str(settings.var_dir.resolve())
    env.setdefault("MESHAUTH_DATABASE_URL", settings.sqlalchemy_url)
    return env
