"""policy stores: attribute_precedence ("request" | "stored"), existing stores keep "request"

Revision ID: 0003_attribute_precedence
Revises: 0002_policy
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_attribute_precedence"
down_revision = "0002_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default fills the existing rows with today's behaviour, on SQLite and PostgreSQL alike.
    op.add_column(
        "policy_stores",
        sa.Column("attribute_precedence", sa.String(8), nullable=False, server_default="request"),
    )


def downgrade() -> None:
    op.drop_column("policy_stores", "attribute_precedence")
