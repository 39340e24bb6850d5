"""dataset-migrator: bring the control plane and every dataset's vector database to schema head."""

from __future__ import annotations

from migrator.errors import MigrationError, MigratorError
from migrator.runner import run_startup_migrations
from migrator.summary import DatasetOutcome, RunSummary

__all__ = [
    "DatasetOutcome",
    "MigrationError",
    "MigratorError",
    "RunSummary",
    "run_startup_migrations",
]
