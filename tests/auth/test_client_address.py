"""The caller's address the guessing throttle counts: the nearest hop no trusted proxy vouches for."""

from __future__ import annotations

from ipaddress import ip_network

from starlette.requests import Request

from meshauth.auth.client_auth import client_address

TRUSTED = [ip_network("10.0.0.0/8")]


def _request(peer: str, *forwarded: bytes) -> Request:
    headers = [(b"x-forwarded-for", value) for value in forwarded]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "client": (peer, 1)})


def test_the_nearest_untrusted_hop_counts() -> None:
    assert client_address(_request("10.0.0.1", b"203.0.113.9, 10.1.1.1"), TRUSTED) == "203.0.113.9"
    assert client_address(_request("198.51.100.7", b"203.0.113.9"), TRUSTED) == "198.51.100.7"  # untrusted peer
    assert client_address(_request("10.0.0.1"), TRUSTED) == "10.0.0.1"


def test_every_forwarded_for_line_is_read() -> None:
    """A proxy that adds its own ``X-Forwarded-For`` line (HAProxy's ``option forwardfor``) leaves the
    client's line first: reading only the first line counted an address the guesser chose, a fresh
    throttle bucket per guess. The lines are one list (RFC 9110 §5.3), the proxy's hop last."""
    spoofed = _request("10.0.0.1", b"192.0.2.1", b"203.0.113.9")
    assert client_address(spoofed, TRUSTED) == "203.0.113.9"
