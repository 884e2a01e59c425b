"""Waiting for a child's health URL (``meshauth.local.health``), against real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshauth.local.health import NotHealthy, wait_healthy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_returns_once_the_url_answers_200(http_server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = http_server
    wait_healthy(f"http://127.0.0.1:{port}/", proc, timeout=30)


def test_a_process_that_exits_first_is_named_with_its_exit_code() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(NotHealthy, match="svc exited with 3 while starting"):
        wait_healthy(f"http://127.0.0.1:{_free_port()}/", proc, timeout=30, name="svc")


def test_a_url_that_never_answers_times_out(http_server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, _port = http_server
    with pytest.raises(NotHealthy, match="did not answer"):
        wait_healthy(f"http://127.0.0.1:{_free_port()}/", proc, timeout=0.3, name="svc")
