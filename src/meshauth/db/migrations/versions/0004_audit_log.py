"""message bus workers: audit_log (one row per audit event) and analytics_minutes (per-minute aggregates)

Revision ID: 0004_audit_log
Revises: 0003_attribute_precedence
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_audit_log"
down_revision = "0003_attribute_precedence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(40)),
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
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_time_us_id", "audit_log", ["time_us", "id"])
    op.create_index("ix_audit_log_subject_time_us", "audit_log", ["subject", "time_us"])
    op.create_table(
        "analytics_minutes",
        sa.Column("minute", sa.BigInteger, nullable=False),
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


def downgrade() -> None:
    op.drop_table("analytics_minutes")
    op.drop_index("ix_audit_log_subject_time_us", table_name="audit_log")
    op.drop_index("ix_audit_log_time_us_id", table_name="audit_log")
    op.drop_table("audit_log")
