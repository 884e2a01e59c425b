"""The workload users' tokens: minted with the service's own key, they verify as the gate verifies them
(real SQLite key table, the service's own verifier and settings)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshauth.auth.keys import KeyStore, ensure_key
from meshauth.auth.tokens import TokenVerifier
from meshauth.bench import user_tokens
from meshauth.config import Settings
from meshauth.db import migrate
from meshauth.db.engine import create_engine


def test_tokens_verify_as_the_gate_verifies_them(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'bench.db'}", var_dir=tmp_path)
    migrate(settings.sqlalchemy_url)

    async def prepare() -> None:
        engine = create_engine(settings.sqlalchemy_url)
        await ensure_key(engine, settings.signing_alg)
        await engine.dispose()

    asyncio.run(prepare())
    path = user_tokens.write(tmp_path / "users.tokens", f"sqlite:///{tmp_path / 'bench.db'}", 5, "bench-c0")
    tokens = path.read_text().splitlines()
    assert len(tokens) == 5 and len(set(tokens)) == 5

    async def verify() -> list[tuple[str, str, str]]:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            keys = KeyStore(engine, overlap=0)
            await keys.load()
            verifier = TokenVerifier(
                keys,
                issuer=settings.issuer,
                audience=settings.audience,
                leeway=settings.leeway,
                max_bytes=settings.max_token_bytes,
                cache_size=10,
            )
            out = []
            for token in tokens:
                identity = await verifier.verify(token)
                out.append((identity.subject, identity.client_id, identity.scope))
            return out
        finally:
            await engine.dispose()

    # line n + 1 is user u{n}; the subject differs from client_id, so the gate asks about User::"u{n}"
    assert asyncio.run(verify()) == [(f"u{n}", "bench-c0", "read") for n in range(5)]
