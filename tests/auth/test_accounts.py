"""Account field validation (``meshauth.auth.accounts``)."""

from __future__ import annotations

import pytest

from meshauth.auth.accounts import MAX_ATTRIBUTES_BYTES, AccountError, check_attributes


def test_attributes_are_measured_in_stored_utf8_bytes_not_characters() -> None:
    """Two-byte characters: under the limit counted as characters, over it as the bytes stored."""
    value = {"note": "\u00e9" * (MAX_ATTRIBUTES_BYTES * 2 // 3)}
    with pytest.raises(AccountError, match="bytes"):
        check_attributes(value)


def test_attributes_within_the_limit_are_kept() -> None:
    value = {"team": "payments", "level": 3}
    assert check_attributes(value) == value
