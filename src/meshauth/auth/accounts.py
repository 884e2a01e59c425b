"""Users and OAuth clients in SQL. Names are restricted so they are safe in headers, cookies and Cedar uids."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.db.tables import clients, users

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
    if len(repr(value)) > MAX_ATTRIBUTES_BYTES:
        raise AccountError(f"attributes must be under {MAX_ATTRIBUTES_BYTES} bytes")
    return value


class Accounts:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_client(
        self, client_id: str, secret_hash: str, scopes: tuple[str, ...], grant_types: tuple[str, ...]
    ) -> Client:
        if client_id in RESERVED_CLIENT_IDS:
            raise AlreadyExists(f"client id {client_id!r} is reserved")
        client = Client(client_id, secret_hash, scopes, grant_types, False, int(time.time()))
        try:
            async with self._engine.begin() as conn:
                # A client's token has sub = client_id: one name must not be both a client and a user,
                # or the two identities would be indistinguishable downstream (RFC 9068 §5).
                if await conn.scalar(sa.select(users.c.username).where(users.c.username == client_id)):
                    raise AlreadyExists(f"{client_id!r} is already a username")
                await conn.execute(
                    clients.insert().values(
                        client_id=client_id,
                        secret_hash=secret_hash,
                        scopes=list(scopes),
                        grant_types=list(grant_types),
                        disabled=False,
                        created_at=client.created_at,
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"client {client_id!r} already exists") from None
        return client

    async def get_client(self, client_id: str) -> Client | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(clients).where(clients.c.client_id == client_id))).first()
        if row is None:
            return None
        return Client(
            row.client_id, row.secret_hash, tuple(row.scopes), tuple(row.grant_types), row.disabled, row.created_at
        )

    async def list_clients(self) -> list[Client]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(clients).order_by(clients.c.client_id))).all()
        return [
            Client(r.client_id, r.secret_hash, tuple(r.scopes), tuple(r.grant_types), r.disabled, r.created_at)
            for r in rows
        ]

    async def set_client_disabled(self, client_id: str, disabled: bool) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                clients.update().where(clients.c.client_id == client_id).values(disabled=disabled)
            )
        return result.rowcount > 0

    async def delete_client(self, client_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(clients.delete().where(clients.c.client_id == client_id))
        return result.rowcount > 0

    async def add_user(self, username: str, password_hash: str, attributes: dict[str, Any]) -> User:
        user = User(username, password_hash, attributes, False, int(time.time()))
        try:
            async with self._engine.begin() as conn:
                if await conn.scalar(sa.select(clients.c.client_id).where(clients.c.client_id == username)):
                    raise AlreadyExists(f"{username!r} is already a client id")
                await conn.execute(
                    users.insert().values(
                        username=username,
                        password_hash=password_hash,
                        attributes=attributes,
                        disabled=False,
                        created_at=user.created_at,
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"user {username!r} already exists") from None
        return user

    async def get_user(self, username: str) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.username == username))).first()
        if row is None:
            return None
        return User(row.username, row.password_hash, row.attributes, row.disabled, row.created_at)

    async def list_users(self) -> list[User]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(users).order_by(users.c.username))).all()
        return [User(r.username, r.password_hash, r.attributes, r.disabled, r.created_at) for r in rows]

    async def set_user_disabled(self, username: str, disabled: bool) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(users.update().where(users.c.username == username).values(disabled=disabled))
        return result.rowcount > 0

    async def delete_user(self, username: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(users.delete().where(users.c.username == username))
        return result.rowcount > 0
