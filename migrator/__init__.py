"""dataset-migrator: bring the control plane and every dataset's vector database to schema head."""

from __future__ import annotations

from migrator.errors import MigrationError, MigratorError
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.summary import DatasetOutcome, RunSummary

__all__ = [
    "DatasetOutcome",
    "MigrationError",
    "MigratorError",
    "RunSummary",
    "run_startup_migrations",
]
