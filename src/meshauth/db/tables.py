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

# --- policy service -----------------------------------------------------------------------------

policy_stores = sa.Table(
    "policy_stores",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # Increases on every activation, schema change and deletion; never reused, so a decision
    # cached under (store, revision) can never be served for a different policy set.
    sa.Column("revision", sa.BigInteger, nullable=False, default=0),
    sa.Column("active_version", sa.Integer, nullable=True),
    # Counter handing out version numbers (UPDATE … RETURNING keeps concurrent uploads apart).
    sa.Column("last_version", sa.Integer, nullable=False, default=0),
    sa.Column("schema_text", sa.Text, nullable=True),
    sa.Column("schema_format", sa.String(8), nullable=True),
    # Increases on every entity write, so other replicas know to drop their entity caches.
    sa.Column("entities_version", sa.BigInteger, nullable=False, default=0),
    # Deleted stores keep their row (a tombstone) so that a re-created store continues the revision.
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Whose attribute wins when a decision request's ``properties`` name one the stored entity
    # holds: "request" (merged over the stored attributes) or "stored". A change bumps ``revision``.
    sa.Column("attribute_precedence", sa.String(8), nullable=False, default="request", server_default="request"),
)

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("store", sa.String(64), sa.ForeignKey("policy_stores.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

policy_entities = sa.Table(
    "policy_entities",
    metadata,
    sa.Column("store", sa.String(64), sa.ForeignKey("policy_stores.name"), primary_key=True),
    # Canonical JSON of [type, id]: one indexable key for the loader's IN (…) queries.
    sa.Column("uid", sa.Text, primary_key=True),
    # The entity in Cedar's JSON entity format, exactly as handed to the engine.
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# --- message bus workers (issue 12) ------------------------------------------------------------------

# One row per audit event, written by `meshauth worker audit`; the event id makes inserts idempotent.
# Times are Unix microseconds: events of one second must keep their order.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("subject_type", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(8), nullable=True),
    sa.Column("action", sa.String(256), nullable=False),
    sa.Column("store", sa.String(64), nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("latency_us", sa.BigInteger, nullable=False),
    sa.Index("ix_audit_log_time_us_id", "time_us", "id"),
    sa.Index("ix_audit_log_subject_time_us", "subject", "time_us"),
)

# Per-minute aggregates of decision events, one row per (minute, store, action, stream partition):
# a partition is handled by one consumer at a time and in order, so ``last_entry`` (the newest stream
# entry counted) makes a redelivered event change nothing. Latency: a sparse log histogram (JSON).
analytics_minutes = sa.Table(
    "analytics_minutes",
    metadata,
    sa.Column("minute", sa.BigInteger, nullable=False),  # Unix seconds at the minute's start
    sa.Column("store", sa.String(64), nullable=False),
    sa.Column("action", sa.String(256), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("allows", sa.BigInteger, nullable=False),
    sa.Column("denies", sa.BigInteger, nullable=False),
    sa.Column("cache_hits", sa.BigInteger, nullable=False),
    sa.Column("cache_lookups", sa.BigInteger, nullable=False),
    sa.Column("latency", sa.JSON, nullable=False),
    sa.Column("last_entry", sa.String(40), nullable=False),
    sa.PrimaryKeyConstraint("minute", "store", "action", "partition", name="pk_analytics_minutes"),
)
