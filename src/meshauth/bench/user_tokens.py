"""Access tokens for the workload's 10,000 users, minted with the gate's own signing key.

The users are Cedar entities, not accounts (issue 13: accounts only as many as the scenarios need):
10,000 password logins would cost minutes of argon2 and prove nothing the gate measures. A token
here is what the token endpoint would issue the user after a login (same issuer, audience, key, and
claims: ``sub`` the user, ``client_id`` a benchmark client, scope ``read``); the gate verifies it
like any other and asks the policy service about ``User::"u…"``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshauth.auth.keys import KeyStore
from meshauth.auth.tokens import TokenIssuer
from meshauth.config import Settings
from meshauth.config_checks import async_database_url
from meshauth.db.engine import create_engine

# Longer than a run and a rerun by hand (``bench.hold``): a token must not expire mid-measurement.
TTL = 4 * 3600


def user_subject(n: int) -> str:
    return f"u{n}"


async def _mint(database_url: str, users: int, client_id: str) -> list[str]:
    engine = create_engine(async_database_url(database_url))
    try:
        keys = KeyStore(engine, overlap=0)
        await keys.load()
        fields = Settings.model_fields
        issuer = TokenIssuer(
            keys, issuer=str(fields["issuer"].default), audience=str(fields["audience"].default), ttl=TTL
        )
        return [issuer.issue(subject=user_subject(n), client_id=client_id, scope="read").token for n in range(users)]
    finally:
        await engine.dispose()


def write(path: Path, database_url: str, users: int, client_id: str) -> Path:
    """One token per line, user ``u{n}`` on line n + 1 (what ``harness.lua``'s ``@n`` reads)."""
    path.write_text("\n".join(asyncio.run(_mint(database_url, users, client_id))) + "\n")
    return path
