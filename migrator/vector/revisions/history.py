"""What a dataset database records about its revisions, shared by every executor.

Two tables of the migrator's own live in each dataset database beside the application's:
``migrator_revisions`` (one row per applied revision: id, applied at, duration, migrator version)
and ``migrator_backfill_checkpoints`` (how far each running backfill got). That record is the
truth; the control plane only caches the current revision.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

HISTORY_TABLE = "migrator_revisions"
CHECKPOINT_TABLE = "migrator_backfill_checkpoints"
DISTRIBUTION = "dataset-migrator"


@dataclass(frozen=True)
class DatasetContext:
    """What ``op`` tells a revision about the dataset it runs on (no secrets)."""

    dataset_id: str
    dataset_name: str
    vector_dimension: int


@dataclass(frozen=True)
class AppliedRevisions:
    """What one upgrade or downgrade did: revisions before and after, and those it ran."""

    before: str | None
    after: str | None
    applied: tuple[str, ...] = ()


# Called after each revision is recorded: (revision id, "upgrade" | "downgrade", duration_ms).
OnRevision = Callable[[str, str, float], None]


def migrator_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# Datasets migrated before revisions existed record integer versions 1-3 in the adapters'
# ``migrator_schema_version`` table; version N is the first N packaged revisions.
LEGACY_VERSION_TABLE = "migrator_schema_version"
LEGACY_REVISIONS = (
    "0001_create_collections",
    "0002_add_created_at_and_deleted",
    "0003_create_index",
)


def carried_revisions(legacy_version: int, chain_ids: list[str]) -> list[str]:
    """The revisions a legacy integer version stands for, when the chain holds them all."""
    carried = list(LEGACY_REVISIONS[: max(0, legacy_version)])
    return carried if all(rev in chain_ids for rev in carried) else []
