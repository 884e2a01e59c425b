"""Every table, in SQLAlchemy Core. Times are integer Unix seconds: portable across SQLite and PostgreSQL.

The auth service owns the first group, the policy service the second; neither reads the other's.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --- auth service -------------------------------------------------------------------------------

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Set when a newer key took over signing; the key stays published until no token it signed can be live.
    sa.Column("retired_at", sa.BigInteger, nullable=True),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("grant_types", sa.JSON, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    # SHA-256 of the opaque token: a leaked table does not leak usable tokens.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    # The access token issued beside this refresh token, so revoking the family can deny it too.
    sa.Column("access_jti", sa.String(64), nullable=False),
    sa.Column("access_exp", sa.BigInteger, nullable=False),
)
