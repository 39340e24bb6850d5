"""What a dataset's own store says about itself, read without changing it: rows per collection
from the store's metadata and the revision it records. ``migrator plan --deep`` asks for it.

Optional for an adapter: one without ``read_stats`` has its revision read through
``read_version`` and its rows shown as "not reported".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# How the rows were counted, shown beside them.
ROWS_FROM_MANIFEST = "manifest"  # LanceDB: each fragment's row count, minus deletions
ROWS_ESTIMATED = "estimate"  # PostgreSQL: pg_class.reltuples, else pg_stat's live tuples
ROWS_NOT_REPORTED = "not reported"


@dataclass(frozen=True)
class StoreStats:
    """Rows per collection (None: the store keeps no figure for it yet) and the revision the
    store records (None: none). The migrator's own tables are left out."""

    revision: str | None
    rows: dict[str, int | None] = field(default_factory=dict)
    rows_basis: str = ROWS_NOT_REPORTED


@runtime_checkable
class StatsReader(Protocol):
    """An adapter that can report its store's stats, reading metadata only (no row scan)."""

    async def read_stats(self) -> StoreStats: ...
