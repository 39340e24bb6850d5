"""a running dataset's progress in its run record

``migration_run_datasets.progress`` holds, while a dataset's index build or backfill runs, a
small JSON object: the operation, the server's phase, done of total in a unit, and when it was
sampled. It is written at most every PROGRESS_INTERVAL_S and kept after the dataset finishes
(where the last long operation got to). Nullable, no default: adding it rewrites no row, and
the downgrade drops only what this revision added.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.drop_column("progress")
