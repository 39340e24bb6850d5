"""rollout: halted runs, deferred datasets, stages, quarantine counts

Additive: the new columns have server defaults, and the status CHECK constraints only grow
(``halted`` for runs, ``deferred`` for dataset rows), so rows written by 0003 stay valid.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RUN_STATUSES = ("running", "succeeded", "partial", "failed")
ROW_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "timed_out")


def _in(values: tuple[str, ...]) -> str:
    return f"status IN {values!r}"


def _set_checks(runs: tuple[str, ...], rows: tuple[str, ...], *, upgrading: bool) -> None:
    """Replace both status checks. Up to 0003 the naming convention prefixed their names a
    second time (``ck_migration_runs_ck_migration_runs_status``): a plain name finds them.
    0004 writes them as spelled (``op.f``), and its downgrade finds them that way."""

    def old(name: str) -> str:
        return name if upgrading else op.f(name)

    def new(name: str) -> str:
        return op.f(name) if upgrading else name

    for table, values in (("migration_runs", runs), ("migration_run_datasets", rows)):
        name = f"ck_{table}_status"
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(old(name), type_="check")
            batch.create_check_constraint(new(name), sa.text(_in(values)))


def upgrade() -> None:
    with op.batch_alter_table("dataset_databases") as batch:
        # Runs in a row in which the dataset's migration itself raised (quarantine counter).
        batch.add_column(
            sa.Column("migration_failures", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("migration_runs") as batch:
        # The stage (canary 0, then waves) whose chord was sent last; a body advances it once.
        batch.add_column(sa.Column("stage", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.add_column(sa.Column("stage", sa.Integer(), server_default="0", nullable=False))
    _set_checks((*RUN_STATUSES, "halted"), (*ROW_STATUSES, "deferred"), upgrading=True)


def downgrade() -> None:
    _set_checks(RUN_STATUSES, ROW_STATUSES, upgrading=False)
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.drop_column("stage")
    with op.batch_alter_table("migration_runs") as batch:
        batch.drop_column("stage")
    with op.batch_alter_table("dataset_databases") as batch:
        batch.drop_column("migration_failures")
