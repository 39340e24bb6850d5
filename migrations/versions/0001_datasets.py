"""datasets and their vector databases

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "dataset_databases",
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("vector_provider", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("connection_info", sa.JSON(), nullable=False),
        sa.Column("vector_schema_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("state", sa.String(16), server_default="active", nullable=False),
        sa.Column("last_migrated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('active', 'provisioning', 'quarantined')", name="ck_dataset_databases_state"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_databases_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_dataset_databases"),
    )
    op.create_index(
        "ix_dataset_databases_version_state",
        "dataset_databases",
        ["vector_schema_version", "state"],
    )


def downgrade() -> None:
    op.drop_index("ix_dataset_databases_version_state", table_name="dataset_databases")
    op.drop_table("dataset_databases")
    op.drop_table("datasets")
