"""First-run state for the local stack: schema, signing key, and a demo client and user with secrets in var/."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from meshauth.auth.accounts import Accounts
from meshauth.auth.keys import ensure_key
from meshauth.auth.passwords import Passwords
from meshauth.config import Settings
from meshauth.db import create_engine, migrate

DEMO_CLIENT = "demo"
DEMO_USER = "alice"


@dataclass(frozen=True)
class Demo:
    client_id: str
    secret_file: Path
    username: str
    password_file: Path
    login_file: Path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def _secret_file(path: Path) -> str:
    """Read a secret kept in a 0600 file, creating it on first use."""
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(18)
    _write_private(path, value)
    return value


def bootstrap(settings: Settings, *, demo: bool) -> Demo | None:
    migrate(settings.sqlalchemy_url)
    var = settings.var_dir.resolve()
    demo_info = Demo(
        DEMO_CLIENT, var / "demo-client-secret", DEMO_USER, var / "demo-user-password", var / "demo-login.json"
    )

    async def main() -> None:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            await ensure_key(engine, settings.signing_alg, kek=settings.kek)
            if not demo:
                return
            accounts = Accounts(engine)
            passwords = Passwords(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
            # The secrets in var/ are the source of truth: re-create the demo accounts if they were removed.
            client_secret = _secret_file(demo_info.secret_file)
            user_password = _secret_file(demo_info.password_file)
            _write_private(demo_info.login_file, json.dumps({"username": DEMO_USER, "password": user_password}))
            client = await accounts.get_client(DEMO_CLIENT)
            if client is None or not await passwords.verify(client.secret_hash, client_secret):
                await accounts.delete_client(DEMO_CLIENT)
                await accounts.add_client(
                    DEMO_CLIENT,
                    await passwords.hash_async(client_secret),
                    ("read", "write"),
                    ("client_credentials", "password", "refresh_token"),
                )
            user = await accounts.get_user(DEMO_USER)
            if user is None or not await passwords.verify(user.password_hash, user_password):
                await accounts.delete_user(DEMO_USER)
                await accounts.add_user(
                    DEMO_USER, await passwords.hash_async(user_password), {"department": "engineering"}
                )
        finally:
            await engine.dispose()

    asyncio.run(main())
    return demo_info if demo else None
