"""Account field validation, and the one namespace of users and clients (``meshauth.auth.accounts``)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from meshauth.auth.accounts import (
    MAX_ATTRIBUTES_BYTES,
    MAX_ATTRIBUTES_DEPTH,
    AccountError,
    Accounts,
    AlreadyExists,
    check_attributes,
    lock_names,
    new_client,
    new_user,
)
from meshauth.db import create_engine
from meshauth.db.tables import clients
from tests.bus.helpers import until


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


@pytest.mark.postgres
async def test_creating_a_user_waits_for_a_client_of_its_name_being_created(pg_database: str) -> None:
    """A client named "solo" inserted, not yet committed, by a creation holding the names lock (a
    clients bulk): creating the user "solo" waits for it, then refuses. Before, the user's check missed
    the uncommitted client and both were stored."""
    engine = create_engine(pg_database)
    try:
        accounts = Accounts(engine)
        async with engine.connect() as other:
            tx = await other.begin()
            await lock_names(other)
            await other.execute(
                clients.insert().values(
                    client_id="solo", secret_hash="h", scopes=[], grant_types=[], disabled=False, created_at=0
                )
            )
            create = asyncio.create_task(accounts.add_user("solo", "h", {}))

            async def waiting() -> bool:
                async with engine.connect() as probe:
                    n = await probe.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                return bool(n) or create.done()

            await until(waiting, what="the user's creation waits on the names lock")
            await tx.commit()
        with pytest.raises(AlreadyExists, match="already taken by a client"):
            await create
    finally:
        await engine.dispose()


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_attributes_nest_at_most_the_limit() -> None:
    """Nesting is bounded far below any recursion limit: attributes nested ~930 deep were stored (by an
    import) and then failed every read of them — that user's logins and the admin's list of all users."""
    assert check_attributes(_nested(MAX_ATTRIBUTES_DEPTH)) == _nested(MAX_ATTRIBUTES_DEPTH)
    with pytest.raises(AccountError, match="nest"):
        check_attributes(_nested(MAX_ATTRIBUTES_DEPTH + 1))
    with pytest.raises(AccountError, match="nest"):
        check_attributes({"list": [_nested(MAX_ATTRIBUTES_DEPTH - 1)]})  # arrays count as objects do
    with pytest.raises(AccountError, match="nest"):
        check_attributes(_nested(100_000))  # refused, not a RecursionError
