"""Users and OAuth clients in SQL. Names are restricted so they are safe in headers, cookies and Cedar uids."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.auth.account_loader import AccountLoader
from meshauth.db.tables import clients, users
from meshauth.nesting import deeper_than

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
# RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
SCOPE_PATTERN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")
# The client id session tokens carry (see auth.gate); no registered client may take it.
RESERVED_CLIENT_IDS = frozenset({"meshauth-session"})
GRANT_TYPES = frozenset({"client_credentials", "password", "refresh_token"})
MAX_SECRET_CHARS = 512
MIN_SECRET_CHARS = 8
MAX_SCOPES = 64
MAX_ATTRIBUTES_BYTES = 16_384
# Far below the interpreter's recursion limit: every reader of stored attributes (the SQL driver's
# JSON decoding, the admin listing, token issuance) recurses into them, deeper in its stack than the
# writer that checked them, so a value nested ~930 deep was stored and then failed every read.
MAX_ATTRIBUTES_DEPTH = 16


# PostgreSQL advisory lock key ("mesh") every account creation holds to commit; see ``lock_names``.
NAMES_LOCK_KEY = 0x6D657368


async def lock_names(conn: AsyncConnection) -> None:
    """Take, for the rest of ``conn``'s transaction, the lock that orders every account creation.

    A name lives in one of two tables, so no constraint keeps it out of both: a creation checks the
    other table first, and without this lock two creations of one name (a user, a client) each miss
    the other's uncommitted row and both commit. Taken before that check, the second waits for the
    first to commit and then sees its row."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": NAMES_LOCK_KEY})
    else:
        # SQLite has one writer at a time; a write that changes nothing takes its lock (and begins
        # the transaction the driver would otherwise begin only at the insert, after the check).
        await conn.execute(sa.text("UPDATE users SET username = username WHERE 0"))


class AccountError(ValueError):
    """Invalid account data; the message names the field."""


class AlreadyExists(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    disabled: bool
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "grant_types": list(self.grant_types),
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str
    attributes: dict[str, Any]
    disabled: bool
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "attributes": self.attributes,
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


def check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise AccountError(
            f"{field} must be 1-128 characters of letters, digits and ._@:- starting with a letter or digit"
        )
    return value


def check_secret(field: str, value: object) -> str:
    if not isinstance(value, str) or not MIN_SECRET_CHARS <= len(value) <= MAX_SECRET_CHARS:
        raise AccountError(f"{field} must be a string of {MIN_SECRET_CHARS}-{MAX_SECRET_CHARS} characters")
    return value


def check_scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_SCOPES:
        raise AccountError(f"scopes must be a list of at most {MAX_SCOPES} scope tokens")
    for scope in value:
        if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
            raise AccountError(f"scopes: {scope!r} is not a valid scope token (RFC 6749 §3.3)")
    return tuple(dict.fromkeys(value))


def check_grant_types(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise AccountError(f"grant_types must be a non-empty list of {sorted(GRANT_TYPES)}")
    for grant in value:
        if grant not in GRANT_TYPES:
            raise AccountError(f"grant_types: {grant!r} is not one of {sorted(GRANT_TYPES)}")
    return tuple(dict.fromkeys(value))


def check_attributes(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AccountError("attributes must be a JSON object")
    if deeper_than(value, MAX_ATTRIBUTES_DEPTH):
        raise AccountError(f"attributes must nest at most {MAX_ATTRIBUTES_DEPTH} levels deep")
    # The size stored: the attributes as UTF-8 JSON (a character outside ASCII is 2-4 bytes).
    try:
        size = len(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError):
        raise AccountError("attributes must be JSON values") from None
    if size > MAX_ATTRIBUTES_BYTES:
        raise AccountError(f"attributes must be under {MAX_ATTRIBUTES_BYTES} bytes")
    return value


def _client(row: Any) -> Client:
    return Client(
        row.client_id, row.secret_hash, tuple(row.scopes), tuple(row.grant_types), row.disabled, row.created_at
    )


def _user(row: Any) -> User:
    return User(row.username, row.password_hash, row.attributes, row.disabled, row.created_at)


@dataclass(frozen=True, slots=True)
class NewClient:
    """A client registration, checked; what the admin API and ``meshauth admin clients create`` store."""

    client_id: str
    secret: str
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user to create, checked; what the admin API and ``meshauth admin users create`` store."""

    username: str
    password: str
    attributes: dict[str, Any]


def new_client(client_id: object, secret: object, scopes: object, grant_types: object) -> NewClient:
    """Check a client registration field by field, in one order for every front; AccountError names
    the first field that is wrong."""
    return NewClient(
        check_name("client_id", client_id),
        check_secret("client_secret", secret),
        check_scopes(scopes),
        check_grant_types(grant_types),
    )


def new_user(username: object, password: object, attributes: object) -> NewUser:
    """Check a new user field by field (see ``new_client``)."""
    return NewUser(check_name("username", username), check_secret("password", password), check_attributes(attributes))


class Accounts:
    """Clients and users share one namespace: a client's token has ``sub = client_id``, so one name
    must not be both, or the two identities would be indistinguishable downstream (RFC 9068 §5)."""

    def __init__(self, engine: AsyncEngine, *, batch_lookups: bool = False) -> None:
        self._engine = engine
        # Concurrent get_user/get_client calls share one query (issue 11): the token endpoint's reads.
        self.loader = AccountLoader(engine, name_ok=NAME_PATTERN.fullmatch) if batch_lookups else None

    async def add_client(
        self, client_id: str, secret_hash: str, scopes: tuple[str, ...], grant_types: tuple[str, ...]
    ) -> Client:
        if client_id in RESERVED_CLIENT_IDS:
            raise AlreadyExists(f"client id {client_id!r} is reserved")
        client = Client(client_id, secret_hash, scopes, grant_types, False, int(time.time()))
        values = {
            **client.public(),
            "secret_hash": secret_hash,
            "scopes": list(scopes),
            "grant_types": list(grant_types),
        }
        await self._insert(clients, users.c.username, "client", client_id, values)
        return client

    async def add_user(self, username: str, password_hash: str, attributes: dict[str, Any]) -> User:
        user = User(username, password_hash, attributes, False, int(time.time()))
        await self._insert(
            users, clients.c.client_id, "user", username, {**user.public(), "password_hash": password_hash}
        )
        return user

    async def get_client(self, client_id: str) -> Client | None:
        if self.loader is not None:
            row = await self.loader.client(client_id)
        else:
            row = await self._get(clients.c.client_id, client_id)
        return None if row is None else _client(row)

    async def get_user(self, username: str) -> User | None:
        if self.loader is not None:
            row = await self.loader.user(username)
        else:
            row = await self._get(users.c.username, username)
        return None if row is None else _user(row)

    async def list_clients(self) -> list[Client]:
        return [_client(r) for r in await self._list(clients.c.client_id)]

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self._list(users.c.username)]

    async def set_client_disabled(self, client_id: str, disabled: bool) -> bool:
        return await self._update(clients.c.client_id, client_id, disabled=disabled)

    async def set_user_disabled(self, username: str, disabled: bool) -> bool:
        return await self._update(users.c.username, username, disabled=disabled)

    async def delete_client(self, client_id: str) -> bool:
        return await self._delete(clients.c.client_id, client_id)

    async def delete_user(self, username: str) -> bool:
        return await self._delete(users.c.username, username)

    async def _insert(
        self, table: sa.Table, other: sa.Column[Any], kind: str, name: str, values: dict[str, Any]
    ) -> None:
        try:
            async with self._engine.begin() as conn:
                await lock_names(conn)
                if await conn.scalar(sa.select(other).where(other == name)):
                    raise AlreadyExists(f"{name!r} is already taken by a {'user' if kind == 'client' else 'client'}")
                await conn.execute(table.insert().values(**values))
        except IntegrityError:
            raise AlreadyExists(f"{kind} {name!r} already exists") from None

    async def _get(self, key: sa.Column[Any], name: str) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(key.table).where(key == name))).first()

    async def _list(self, key: sa.Column[Any]) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(sa.select(key.table).order_by(key))).all())

    async def _update(self, key: sa.Column[Any], name: str, **values: Any) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(key.table).where(key == name).values(**values))
        return bool(result.rowcount)

    async def _delete(self, key: sa.Column[Any], name: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(key.table).where(key == name))
        return bool(result.rowcount)
