"""What the harness does when a load generator is missing: install only when asked, as root, with apt."""

from __future__ import annotations

import shutil

import pytest

from meshauth.bench import machine


def test_not_asked_names_the_packages() -> None:
    cmd, message = machine.install_plan(["wrk", "h2load"], allowed=False, is_root=True, has_apt=True)
    assert cmd is None
    assert "apt-get install nghttp2-client wrk" in message and "--install-tools" in message


@pytest.mark.parametrize(
    ("is_root", "has_apt", "text"),
    [(False, True, "needs root: run `sudo apt-get install nghttp2-client`"), (True, False, "no apt-get here")],
)
def test_asked_but_cannot(is_root: bool, has_apt: bool, text: str) -> None:
    cmd, message = machine.install_plan(["h2load"], allowed=True, is_root=is_root, has_apt=has_apt)
    assert cmd is None
    assert text in message


def test_asked_as_root_with_apt_installs_exactly_the_missing_packages() -> None:
    cmd, _ = machine.install_plan(["h2load", "taskset"], allowed=True, is_root=True, has_apt=True)
    assert cmd == ["apt-get", "install", "-y", "--no-install-recommends", "nghttp2-client", "util-linux"]


def test_install_tools_refused_here_returns_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no apt-get
    problem = machine.install_tools(["wrk"], allowed=True)
    assert problem is not None and "no apt-get here" in problem
