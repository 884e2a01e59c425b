"""policy service tables: policy stores, policy versions, entities

Revision ID: 0002_policy
Revises: 0001_auth
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_policy"
down_revision = "0001_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_stores",
        sa.Column("name", sa.String(64)),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("active_version", sa.Integer, nullable=True),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("schema_text", sa.Text, nullable=True),
        sa.Column("schema_format", sa.String(8), nullable=True),
        sa.Column("entities_version", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_policy_stores"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("store", sa.String(64)),
        sa.Column("version", sa.Integer),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("store", "version", name="pk_policy_versions"),
        sa.ForeignKeyConstraint(["store"], ["policy_stores.name"], name="fk_policy_versions_store_policy_stores"),
    )
    op.create_table(
        "policy_entities",
        sa.Column("store", sa.String(64)),
        sa.Column("uid", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("store", "uid", name="pk_policy_entities"),
        sa.ForeignKeyConstraint(["store"], ["policy_stores.name"], name="fk_policy_entities_store_policy_stores"),
    )


def downgrade() -> None:
    op.drop_table("policy_entities")
    op.drop_table("policy_versions")
    op.drop_table("policy_stores")
