"""record attempts, durations, progress and per-server keys

Additive only: every new column is nullable or has a server default, so rows written by 0002
stay valid and a running old worker keeps working during a rolling deploy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_databases") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("server_key", sa.String(255), server_default="", nullable=False))
    with op.batch_alter_table("migration_runs") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_progress_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.drop_column("duration_ms")
        batch.drop_column("attempts")
    with op.batch_alter_table("migration_runs") as batch:
        batch.drop_column("last_progress_at")
        batch.drop_column("options")
    with op.batch_alter_table("dataset_databases") as batch:
        batch.drop_column("server_key")
        batch.drop_column("last_error")
