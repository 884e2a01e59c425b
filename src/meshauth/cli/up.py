"""``meshauth up``: the whole local stack in the foreground."""

from __future__ import annotations


def up() -> None:
    """Start Valkey (embedded unless REDIS_URL), the auth and policy services; print a walkthrough."""
    raise SystemExit("not yet")
