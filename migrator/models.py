"""Control-plane tables: the head shape Alembic builds, for ``alembic check``."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from migrator.constants import DATASET_ID_CHARS
from migrator.states import DatasetState, DatasetStatus, RunStatus, Trigger, sql_values

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _check_in(column: str, members: type[StrEnum]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN {sql_values(members)!r}", name=column)


def _parent_key(name: str, parent: str) -> sa.Column[str]:
    """A primary-key column that is also the parent row's id; removed with the parent."""
    return sa.Column(
        name, sa.String(36), sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"), primary_key=True
    )


datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The migrator's state of each dataset, by id: the registry's datasets, or an external
# DATASET_SOURCE's (which have no row in ``datasets``; hence no foreign key).
dataset_databases = sa.Table(
    "dataset_databases",
    metadata,
    sa.Column("dataset_id", sa.String(DATASET_ID_CHARS), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("vector_provider", sa.String(64), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("connection_info", sa.JSON(), nullable=False),
    # The dataset's current vector revision id as last seen (NULL: none); its own record rules.
    sa.Column("vector_schema_version", sa.String(255), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column("last_migrated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("server_key", sa.String(255), nullable=False, server_default=""),
    sa.Column("migration_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Set while the dataset source no longer returns the dataset: its state is kept, it takes
    # no part in runs; cleared when the source returns it again.
    sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
    _check_in("state", DatasetState),
    sa.Index("ix_dataset_databases_version_state", "vector_schema_version", "state"),
)

migration_runs = sa.Table(
    "migration_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(255), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("relational_before", sa.String(64), nullable=True),
    sa.Column("relational_after", sa.String(64), nullable=True),
    sa.Column("total_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("succeeded_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failed_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("celery_task_id", sa.String(155), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("options", sa.JSON(), nullable=True),
    sa.Column("last_progress_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("stage", sa.Integer(), nullable=False, server_default="0"),
    _check_in("trigger", Trigger),
    _check_in("status", RunStatus),
    sa.Index("ix_migration_runs_started_at", "started_at"),
    sa.Index("ix_migration_runs_status", "status"),
)

migration_run_datasets = sa.Table(
    "migration_run_datasets",
    metadata,
    _parent_key("run_id", "migration_runs"),
    # No foreign key to datasets: history outlives a removed dataset.
    sa.Column("dataset_id", sa.String(DATASET_ID_CHARS), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version_before", sa.String(255), nullable=True),
    sa.Column("version_after", sa.String(255), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("stage", sa.Integer(), nullable=False, server_default="0"),
    # A long operation in flight: {operation, phase, done, total, unit, updated_at}.
    sa.Column("progress", sa.JSON(), nullable=True),
    _check_in("status", DatasetStatus),
    sa.Index("ix_migration_run_datasets_status", "run_id", "status"),
)
