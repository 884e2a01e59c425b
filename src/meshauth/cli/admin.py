"""``meshauth admin``: users, clients and signing keys, straight against the database.

Works with or without a running service. A key rotation is announced on the invalidation stream when a
Redis is known (``REDIS_URL`` or the embedded one ``meshauth up`` recorded), so running replicas switch
at once; otherwise they pick it up on their next periodic refresh.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import typer
from redis.exceptions import RedisError

from meshauth.auth import keys
from meshauth.auth.accounts import (
    AccountError,
    Accounts,
    AlreadyExists,
    new_client,
    new_user,
)
from meshauth.auth.offboarding import cut_off, cut_off_client
from meshauth.auth.passwords import Passwords
from meshauth.auth.service import KEYS_KIND, AuthService, key_overlap
from meshauth.bus.invalidations import publish
from meshauth.cli.admin_import import clients_import, users_import
from meshauth.config import Settings
from meshauth.config_load import load_settings
from meshauth.db import create_engine, migrate
from meshauth.redis_client import Keys, connect, resolve_redis_url

app = typer.Typer(help="Users, clients and signing keys.", no_args_is_help=True)
clients_app = typer.Typer(help="OAuth clients.", no_args_is_help=True)
users_app = typer.Typer(help="Users.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(users_app, name="users")
users_app.command("import")(users_import)
clients_app.command("import")(clients_import)

T = TypeVar("T")


def _run(work: Callable[[Settings, Accounts, Passwords], Awaitable[T]]) -> T:
    settings = load_settings()
    migrate(settings.sqlalchemy_url)

    async def main() -> T:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            passwords = Passwords(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
            return await work(settings, Accounts(engine), passwords)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _utf8(what: str, secret: str) -> None:
    """Refuse a non-UTF-8 argument (Python keeps its bytes as surrogates, which no hash or database encodes)."""
    try:
        secret.encode()
    except UnicodeEncodeError:
        raise _fail(f"the {what} is not UTF-8 text", 2) from None


def _json_object(text: str) -> object:
    """``--attributes`` parsed as strict JSON: msgspec, as ``users import`` reads them, refuses NaN and Infinity
    (which json.loads takes, and no other JSON parser reads back) and bytes that are not UTF-8."""
    try:
        return msgspec.json.decode(text.encode("utf-8", "surrogateescape"))
    except msgspec.DecodeError as exc:
        raise _fail(f"attributes is not JSON: {exc}", 2) from None
    except UnicodeDecodeError as exc:
        raise _fail(f"attributes is not UTF-8 text (byte {exc.start})", 2) from None
    except RecursionError:
        raise _fail("attributes is not JSON: nested too deeply", 2) from None


def _echo(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@clients_app.command("create")
def clients_create(
    client_id: str = typer.Argument(...),
    secret: str = typer.Option(..., "--secret", prompt=True, hide_input=True, help="Client secret (8-512 chars)."),
    scope: list[str] = typer.Option([], "--scope", help="Allowed scope; repeat for several."),
    grant: list[str] = typer.Option(["client_credentials"], "--grant", help="Allowed grant type; repeat."),
) -> None:
    """Register an OAuth client."""
    _utf8("client secret", secret)
    try:
        new = new_client(client_id, secret, list(scope), list(grant))
    except AccountError as exc:
        raise _fail(str(exc), 2) from None

    async def work(_s: Settings, accounts: Accounts, passwords: Passwords) -> dict[str, Any]:
        secret_hash = await passwords.hash_async(new.secret)
        return (await accounts.add_client(new.client_id, secret_hash, new.scopes, new.grant_types)).public()

    try:
        _echo(_run(work))
    except AlreadyExists as exc:
        raise _fail(str(exc)) from None


@clients_app.command("list")
def clients_list() -> None:
    """List clients (never their secrets)."""

    async def work(_s: Settings, accounts: Accounts, _p: Passwords) -> list[dict[str, Any]]:
        return [c.public() for c in await accounts.list_clients()]

    _echo(_run(work))


@clients_app.command("disable")
def clients_disable(client_id: str) -> None:
    """Stop a client from getting tokens."""
    _offboard("client", client_id, "disabled", lambda accounts: accounts.set_client_disabled(client_id, True))


@clients_app.command("delete")
def clients_delete(client_id: str) -> None:
    """Delete a client."""
    _offboard("client", client_id, "deleted", lambda accounts: accounts.delete_client(client_id))


@users_app.command("create")
def users_create(
    username: str = typer.Argument(...),
    password: str = typer.Option(..., "--password", prompt=True, hide_input=True, help="Password (8-512 chars)."),
    attributes: str = typer.Option("{}", "--attributes", help="JSON object of attributes."),
) -> None:
    """Create a user."""
    _utf8("password", password)
    try:
        new = new_user(username, password, _json_object(attributes))
    except AccountError as exc:
        raise _fail(str(exc), 2) from None

    async def work(_s: Settings, accounts: Accounts, passwords: Passwords) -> dict[str, Any]:
        password_hash = await passwords.hash_async(new.password)
        return (await accounts.add_user(new.username, password_hash, new.attributes)).public()

    try:
        _echo(_run(work))
    except AlreadyExists as exc:
        raise _fail(str(exc)) from None


@users_app.command("list")
def users_list() -> None:
    """List users."""

    async def work(_s: Settings, accounts: Accounts, _p: Passwords) -> list[dict[str, Any]]:
        return [u.public() for u in await accounts.list_users()]

    _echo(_run(work))


@users_app.command("disable")
def users_disable(username: str) -> None:
    """Stop a user from logging in or refreshing tokens."""
    _offboard("user", username, "disabled", lambda accounts: accounts.set_user_disabled(username, True))


@users_app.command("delete")
def users_delete(username: str) -> None:
    """Delete a user."""
    _offboard("user", username, "deleted", lambda accounts: accounts.delete_user(username))


def _offboard(kind: str, name: str, done: str, change: Callable[[Accounts], Awaitable[bool]]) -> None:
    """Disable or delete an account, then end what it holds (tokens, sessions, refresh tokens)."""

    try:
        name.encode()
    except UnicodeEncodeError:  # a non-UTF-8 argument: no account has such a name (the driver cannot send it)
        raise _fail(f"no {kind} {name!r}") from None

    async def work(_s: Settings, accounts: Accounts, _p: Passwords) -> bool:
        return await change(accounts)

    if not _run(work):
        raise _fail(f"no {kind} {name!r}")
    typer.echo(f"{kind} {name} {done}; {_end_tokens(kind, name)}")


def _end_tokens(kind: str, name: str) -> str:
    """End what a disabled user or client holds, when a Redis is reachable (the running replicas' one)."""
    settings = load_settings()
    url = resolve_redis_url(settings)
    if url is None:
        return "no Redis known: issued tokens and sessions end at their own expiry"

    async def main() -> str:
        service = AuthService(settings, redis_url=url)
        try:
            if kind == "client":
                await cut_off_client(name, refresh=service.refresh_tokens, denylist=service.denylist)
                return "its issued tokens are refused from now on"
            ended = await cut_off(
                name, refresh=service.refresh_tokens, denylist=service.denylist, sessions=service.sessions
            )
            return f"issued tokens refused, {ended} tracked tokens and sessions ended"
        finally:
            await service.stop()

    try:
        return asyncio.run(main())
    except (RedisError, OSError) as exc:
        return f"Redis unreachable ({exc}): issued tokens and sessions end at their own expiry"


@app.command("rotate-keys")
def rotate_keys() -> None:
    """Make a new signing key the signer. Old keys keep verifying until every token they signed expired."""
    settings = load_settings()
    migrate(settings.sqlalchemy_url)
    overlap = key_overlap(settings)

    async def main() -> tuple[str, list[str], bool]:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            kid, deleted = await keys.rotate(engine, settings.signing_alg, overlap=overlap, kek=settings.kek)
        finally:
            await engine.dispose()
        announced = False
        url = resolve_redis_url(settings)
        if url:
            redis = connect(url)
            try:
                await publish(redis, Keys(settings.redis_prefix).invalidations, KEYS_KIND, kid)
                announced = True
            except (RedisError, OSError):
                pass
            finally:
                await redis.aclose()
        return kid, deleted, announced

    kid, deleted, announced = asyncio.run(main())
    typer.echo(f"new signing key {kid} ({settings.signing_alg}); previous keys verify for {overlap}s more")
    if deleted:
        typer.echo(f"deleted expired keys: {', '.join(deleted)}")
    typer.echo(
        "running replicas notified" if announced else "no Redis reachable: replicas switch on their next key refresh"
    )
