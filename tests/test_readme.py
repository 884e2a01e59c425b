"""The README states what the code does, where a statement is a status code a client relies on."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_logout_with_two_session_cookies_is_400() -> None:
    """The README gives the status ``DELETE /v1/sessions/current`` answers for two session cookies as
    400 ``invalid_request`` (tests/auth/test_sessions.py checks the code), not the gate's 401."""
    text = " ".join(README.read_text().split())
    sentence = re.search(r"[^.]*logging out with two session cookies[^.]*\.", text, re.IGNORECASE)
    assert sentence is not None, "the README no longer says what logout does with two session cookies"
    assert "400 `invalid_request`" in sentence.group(0), sentence.group(0)
    assert "401" not in sentence.group(0), sentence.group(0)
