"""migration run history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migration_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("relational_before", sa.String(64), nullable=True),
        sa.Column("relational_after", sa.String(64), nullable=True),
        sa.Column("total_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("succeeded_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("celery_task_id", sa.String(155), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "trigger IN ('deploy', 'beat', 'admin', 'api')", name="ck_migration_runs_trigger"
        ),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'partial', 'failed')",
            name="ck_migration_runs_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_migration_runs"),
    )
    op.create_index("ix_migration_runs_started_at", "migration_runs", ["started_at"])
    op.create_index("ix_migration_runs_status", "migration_runs", ["status"])
    op.create_table(
        "migration_run_datasets",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version_before", sa.Integer(), nullable=True),
        sa.Column("version_after", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'timed_out')",
            name="ck_migration_run_datasets_status",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["migration_runs.id"],
            name="fk_migration_run_datasets_run_id_migration_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "dataset_id", name="pk_migration_run_datasets"),
    )
    op.create_index(
        "ix_migration_run_datasets_status", "migration_run_datasets", ["run_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_migration_run_datasets_status", table_name="migration_run_datasets")
    op.drop_table("migration_run_datasets")
    op.drop_index("ix_migration_runs_status", table_name="migration_runs")
    op.drop_index("ix_migration_runs_started_at", table_name="migration_runs")
    op.drop_table("migration_runs")
