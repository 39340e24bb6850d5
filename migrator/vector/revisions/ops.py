"""The recorded operations: plain values an executor turns into one store's commands.

``upgrade(op)`` never changes anything itself; each ``op.*`` call appends one of these. A
planner, ``--sql`` and ``check`` read the same list the executors run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from migrator.vector.revisions.types import ColumnType

BackfillFn = Callable[[pa.RecordBatch], "pa.Array[Any] | list[Any]"]
NativeFn = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True)
class Field:
    """One column of a new collection."""

    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True)
class CreateCollection:
    name: str
    fields: tuple[Field, ...]
    primary_key: str | None

    def describe(self) -> str:
        return f"create_collection({self.name!r})"


@dataclass(frozen=True)
class DropCollection:
    name: str

    def describe(self) -> str:
        return f"drop_collection({self.name!r})"


@dataclass(frozen=True)
class AddColumn:
    collection: str
    name: str
    type: ColumnType
    default: Any = None
    nullable: bool = True

    def describe(self) -> str:
        return f"add_column({self.collection!r}, {self.name!r}, {str(self.type)!r})"


@dataclass(frozen=True)
class DropColumn:
    collection: str
    name: str

    def describe(self) -> str:
        return f"drop_column({self.collection!r}, {self.name!r})"


@dataclass(frozen=True)
class RenameColumn:
    collection: str
    name: str
    new_name: str

    def describe(self) -> str:
        return f"rename_column({self.collection!r}, {self.name!r} -> {self.new_name!r})"


@dataclass(frozen=True)
class AlterColumn:
    collection: str
    name: str
    type: ColumnType | None = None
    nullable: bool | None = None

    def describe(self) -> str:
        return f"alter_column({self.collection!r}, {self.name!r})"


@dataclass(frozen=True)
class CreateIndex:
    collection: str
    columns: tuple[str, ...]
    kind: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    concurrently: bool = False
    # Heavy: may outlast DATASET_TIMEOUT_S; the run gives its dataset ``budget_s`` instead.
    heavy: bool = False
    budget_s: float | None = None
    # pgvector session settings for this build; None: INDEX_* settings, else the server's.
    maintenance_work_mem: str | None = None
    parallel_workers: int | None = None

    def describe(self) -> str:
        return f"create_index({self.collection!r}, {list(self.columns)!r}, kind={self.kind!r})"


@dataclass(frozen=True)
class DropIndex:
    collection: str
    name: str
    concurrently: bool = False

    def describe(self) -> str:
        return f"drop_index({self.collection!r}, {self.name!r})"


@dataclass(frozen=True)
class Backfill:
    collection: str
    column: str
    fn: BackfillFn
    columns: tuple[str, ...]
    batch_size: int | None  # None: BACKFILL_BATCH_ROWS
    where: str | None = None
    heavy: bool = False
    budget_s: float | None = None
    # Rows per second at most (0: unlimited); None: BACKFILL_RATE_LIMIT_ROWS_S.
    rate_limit_rows_s: float | None = None

    def describe(self) -> str:
        return f"backfill({self.collection!r}, {self.column!r}, columns={list(self.columns)!r})"


@dataclass(frozen=True)
class Execute:
    """pgvector only: one SQL statement inside the revision's transaction."""

    sql: str
    args: tuple[Any, ...] = ()

    def describe(self) -> str:
        first = self.sql.strip().splitlines()[0] if self.sql.strip() else ""
        return f"execute({first[:60]!r})"


@dataclass(frozen=True)
class Native:
    """LanceDB only: ``fn(connection)`` with the dataset's ``lancedb.AsyncConnection``."""

    fn: NativeFn
    label: str

    def describe(self) -> str:
        return f"native({self.label})"


Operation = (
    CreateCollection
    | DropCollection
    | AddColumn
    | DropColumn
    | RenameColumn
    | AlterColumn
    | CreateIndex
    | DropIndex
    | Backfill
    | Execute
    | Native
)


HeavyOperation = CreateIndex | Backfill


def is_phased(operation: Operation) -> bool:
    """True for work PostgreSQL cannot do inside the revision's one transaction."""
    if isinstance(operation, Backfill):
        return True
    return isinstance(operation, CreateIndex | DropIndex) and operation.concurrently
