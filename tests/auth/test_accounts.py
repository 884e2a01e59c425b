"""Account field validation (``meshauth.auth.accounts``)."""

from __future__ import annotations

import pytest

from meshauth.auth.accounts import MAX_ATTRIBUTES_BYTES, AccountError, check_attributes, new_client, new_user


def test_attributes_are_measured_in_stored_utf8_bytes_not_characters() -> None:
    """Two-byte characters: under the limit counted as characters, over it as the bytes stored."""
    value = {"note": "\u00e9" * (MAX_ATTRIBUTES_BYTES * 2 // 3)}
    with pytest.raises(AccountError, match="bytes"):
        check_attributes(value)


def test_attributes_within_the_limit_are_kept() -> None:
    value = {"team": "payments", "level": 3}
    assert check_attributes(value) == value


def test_new_client_checks_every_field_and_normalises_lists() -> None:
    """The one validation the admin API and the CLI share: repeated scopes and grants collapse."""
    new = new_client("svc", "long-enough-secret", ["read", "read"], ["client_credentials"])
    assert (new.client_id, new.scopes, new.grant_types) == ("svc", ("read",), ("client_credentials",))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (("bad name!", "long-enough-secret", [], ["client_credentials"]), "client_id"),
        (("svc", "short", [], ["client_credentials"]), "client_secret"),
        (("svc", "long-enough-secret", [], ["implicit"]), "grant_types"),
    ],
)
def test_new_client_names_the_field_that_is_wrong(fields: tuple[object, ...], named: str) -> None:
    with pytest.raises(AccountError, match=named):
        new_client(*fields)


def test_new_user_checks_name_password_and_attributes() -> None:
    assert new_user("alice", "long-enough-pw", {"team": "x"}).attributes == {"team": "x"}
    with pytest.raises(AccountError, match="attributes"):
        new_user("alice", "long-enough-pw", ["not", "an", "object"])
