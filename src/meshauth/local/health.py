"""Waiting for a child process's health URL to answer: ``meshauth up``, the benchmarks and the tests
that serve a service all start one and must not use it before it answers."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

POLL_INTERVAL = 0.1  # seconds between attempts: a service starts in ~1 s


class NotHealthy(RuntimeError):
    """The process exited, or the URL did not answer 200 in time; says which."""


def wait_healthy(url: str, proc: subprocess.Popen[Any], *, timeout: float, name: str = "") -> None:
    """Return once ``url`` answers 200; raise NotHealthy when ``proc`` exits first or ``timeout``
    seconds pass. Each attempt waits at most a second, so a hung port cannot stall past the timeout."""
    who = name or str(proc.args)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise NotHealthy(f"{who} exited with {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - a loopback URL we built
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise NotHealthy(f"{who} did not answer {url} within {timeout:g}s")
        time.sleep(POLL_INTERVAL)
