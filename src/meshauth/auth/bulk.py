"""Bulk account items (issue 11): each item of ``/admin/users:bulk``, ``/admin/clients:bulk`` or an
import file checked on its own, so that one bad item is refused with its index and reason and the
others go on.

An item is the object the single-create endpoint takes, with one addition for migrations: a
``password_hash`` (users) or ``client_secret_hash`` (clients) — an argon2id PHC string, checked by
``phc.check_phc`` and stored without re-hashing — instead of the plain password or secret.

A name that appears more than once in one bulk is refused at every occurrence: which definition
the admin meant is unknown, so none is chosen (fail closed). Strings holding a NUL character are
refused (PostgreSQL text cannot store one; SQLite would, and the two must behave alike).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from meshauth.auth.accounts import (
    MAX_ATTRIBUTES_DEPTH,
    RESERVED_CLIENT_IDS,
    AccountError,
    check_attributes,
    check_grant_types,
    check_name,
    check_scopes,
    check_secret,
)
from meshauth.auth.phc import check_phc
from meshauth.nesting import deeper_than

__all__ = ["ClientItem", "Refusal", "UserItem", "plan_clients", "plan_users"]

USER_FIELDS = frozenset({"username", "password", "password_hash", "attributes"})
CLIENT_FIELDS = frozenset({"client_id", "client_secret", "client_secret_hash", "scopes", "grant_types"})


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class UserItem:
    index: int
    username: str
    password: str | None  # to hash; None when password_hash came pre-hashed
    password_hash: str | None
    attributes: dict[str, Any]

    @property
    def name(self) -> str:
        return self.username


@dataclass(frozen=True, slots=True)
class ClientItem:
    index: int
    client_id: str
    secret: str | None
    secret_hash: str | None
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.client_id


def _no_nul(value: Any) -> bool:
    """Whether no string in ``value`` (keys included) holds a NUL character."""
    return b"\\u0000" not in msgspec.json.encode(value)


def _object(item: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise AccountError("item must be a JSON object")
    extra = sorted(set(item) - allowed)
    if extra:
        raise AccountError(f"unknown field {extra[0]!r}")
    # Before anything recurses into the item (the NUL check does): a file line decoded at a shallow
    # stack may nest deeper than a check deeper in the stack can recurse.
    if deeper_than(item, MAX_ATTRIBUTES_DEPTH + 1):
        raise AccountError(f"item nests more than {MAX_ATTRIBUTES_DEPTH} levels deep in its attributes or elsewhere")
    if not _no_nul(item):
        raise AccountError("a string in the item contains a NUL character")
    return item


def _one_of(item: dict[str, Any], plain: str, hashed: str) -> tuple[str | None, str | None]:
    if (plain in item) == (hashed in item):
        raise AccountError(f"give exactly one of {plain} and {hashed}")
    if plain in item:
        return check_secret(plain, item[plain]), None
    return None, check_phc(item[hashed], hashed)


def _user(index: int, raw: Any) -> UserItem:
    item = _object(raw, USER_FIELDS)
    username = check_name("username", item.get("username"))
    password, password_hash = _one_of(item, "password", "password_hash")
    return UserItem(index, username, password, password_hash, check_attributes(item.get("attributes", {})))


def _client(index: int, raw: Any) -> ClientItem:
    item = _object(raw, CLIENT_FIELDS)
    client_id = check_name("client_id", item.get("client_id"))
    if client_id in RESERVED_CLIENT_IDS:
        raise AccountError(f"client_id {client_id!r} is reserved")
    secret, secret_hash = _one_of(item, "client_secret", "client_secret_hash")
    scopes = check_scopes(item.get("scopes", []))
    grant_types = check_grant_types(item.get("grant_types", ["client_credentials"]))
    return ClientItem(index, client_id, secret, secret_hash, scopes, grant_types)


Item = TypeVar("Item", UserItem, ClientItem)


def _plan(
    items: Sequence[Any], check: Callable[[int, Any], Item], kind: str, indexes: Sequence[int] | None
) -> tuple[list[Item], list[Refusal]]:
    valid: list[Item] = []
    refused: list[Refusal] = []
    for n, raw in enumerate(items):
        index = indexes[n] if indexes is not None else n
        try:
            valid.append(check(index, raw))
        except AccountError as exc:
            refused.append(Refusal(index, str(exc)))
    seen: dict[str, list[int]] = {}
    for item in valid:
        seen.setdefault(item.name, []).append(item.index)
    repeated = {name: where for name, where in seen.items() if len(where) > 1}
    if repeated:
        for item in valid:
            where = repeated.get(item.name)
            if where is not None:
                others = ", ".join(str(i) for i in where)
                refused.append(Refusal(item.index, f"{kind} {item.name!r} appears more than once (items {others})"))
        valid = [item for item in valid if item.name not in repeated]
        refused.sort(key=lambda r: r.index)
    return valid, refused


def plan_users(items: Sequence[Any], indexes: Sequence[int] | None = None) -> tuple[list[UserItem], list[Refusal]]:
    """Check every item; ``indexes`` names them (file line numbers), else their position."""
    return _plan(items, _user, "username", indexes)


def plan_clients(items: Sequence[Any], indexes: Sequence[int] | None = None) -> tuple[list[ClientItem], list[Refusal]]:
    return _plan(items, _client, "client_id", indexes)
