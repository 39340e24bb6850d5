"""dataset-migrator: bring the control plane and every dataset's vector database to schema head."""

from __future__ import annotations

from migrator.errors import (
    DatasetBehindError,
    DatasetRemovedError,
    DatasetSourceError,
    MigrationError,
    MigratorError,
)
from migrator.guard import DatasetStatus, dataset_status, require_current
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.summary import DatasetOutcome, RunSummary

__all__ = [
    "DatasetBehindError",
    "DatasetOutcome",
    "DatasetRemovedError",
    "DatasetSourceError",
    "DatasetStatus",
    "MigrationError",
    "MigratorError",
    "RunSummary",
    "dataset_status",
    "require_current",
    "run_startup_migrations",
]
