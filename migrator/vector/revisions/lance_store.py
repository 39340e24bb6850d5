"""The LanceDB side of the revision record: history rows, backfill checkpoints, the snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import lancedb
import pyarrow as pa

from migrator.vector.revisions.history import (
    CHECKPOINT_TABLE,
    HISTORY_TABLE,
    LEGACY_VERSION_TABLE,
    migrator_version,
)
from migrator.vector.revisions.providers import RESERVED_PREFIX
from migrator.vector.revisions.snapshot import CollectionInfo, Snapshot

_HISTORY_FIELDS: list[pa.Field[Any]] = [
    pa.field("revision", pa.string(), nullable=False),
    pa.field("applied_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("duration_ms", pa.float64(), nullable=False),
    pa.field("migrator_version", pa.string(), nullable=False),
]
HISTORY_SCHEMA = pa.schema(_HISTORY_FIELDS)
_CHECKPOINT_FIELDS: list[pa.Field[Any]] = [
    pa.field("revision", pa.string(), nullable=False),
    pa.field("step", pa.int32(), nullable=False),
    pa.field("position", pa.string(), nullable=False),
    pa.field("saved_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
CHECKPOINT_SCHEMA = pa.schema(_CHECKPOINT_FIELDS)


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def table_names(db: lancedb.AsyncConnection) -> set[str]:
    names: list[str] = []
    page_token: str | None = None
    while True:
        response = await db.list_tables(page_token=page_token)
        names.extend(response.tables)
        page_token = response.page_token
        if not page_token:
            return set(names)


async def _own_table(db: lancedb.AsyncConnection, name: str, schema: pa.Schema) -> Any:
    if name not in await table_names(db):
        return await db.create_table(name, schema=schema, exist_ok=True)
    return await db.open_table(name)


async def history_exists(db: lancedb.AsyncConnection) -> bool:
    return HISTORY_TABLE in await table_names(db)


async def applied_revisions(db: lancedb.AsyncConnection) -> list[str]:
    if HISTORY_TABLE not in await table_names(db):
        return []
    table = await db.open_table(HISTORY_TABLE)
    rows = await table.query().select(["revision"]).to_arrow()
    return [str(r) for r in rows.column("revision").to_pylist()]


async def legacy_version(db: lancedb.AsyncConnection) -> int:
    """The integer version an adapter recorded before revisions existed; 0 when none."""
    if LEGACY_VERSION_TABLE not in await table_names(db):
        return 0
    table = await db.open_table(LEGACY_VERSION_TABLE)
    versions = (await table.query().select(["version"]).to_arrow()).column("version")
    return max((int(v) for v in versions.to_pylist() if v is not None), default=0)


async def record_revision(db: lancedb.AsyncConnection, revision: str, duration_ms: float) -> None:
    table = await _own_table(db, HISTORY_TABLE, HISTORY_SCHEMA)
    row = {
        "revision": revision,
        "applied_at": datetime.now(UTC),
        "duration_ms": duration_ms,
        "migrator_version": migrator_version(),
    }
    # merge_insert on the id: a re-run after a crash between the row and the caller's reply
    # finds the row there and writes nothing twice.
    await (
        table.merge_insert("revision")
        .when_not_matched_insert_all()
        .execute(pa.Table.from_pylist([row], schema=HISTORY_SCHEMA))
    )


async def forget_revision(db: lancedb.AsyncConnection, revision: str) -> None:
    if HISTORY_TABLE in await table_names(db):
        table = await db.open_table(HISTORY_TABLE)
        await table.delete(f"revision = {sql_string(revision)}")


async def checkpoints(db: lancedb.AsyncConnection, revision: str, step: int) -> set[str]:
    if CHECKPOINT_TABLE not in await table_names(db):
        return set()
    table = await db.open_table(CHECKPOINT_TABLE)
    rows = await (
        table.query()
        .where(f"revision = {sql_string(revision)} AND step = {int(step)}")
        .select(["position"])
        .to_arrow()
    )
    return {str(p) for p in rows.column("position").to_pylist()}


async def save_checkpoint(
    db: lancedb.AsyncConnection, revision: str, step: int, position: str
) -> None:
    table = await _own_table(db, CHECKPOINT_TABLE, CHECKPOINT_SCHEMA)
    row = {"revision": revision, "step": step, "position": position, "saved_at": datetime.now(UTC)}
    await table.add(pa.Table.from_pylist([row], schema=CHECKPOINT_SCHEMA))


async def clear_checkpoints(db: lancedb.AsyncConnection, revision: str) -> None:
    if CHECKPOINT_TABLE in await table_names(db):
        table = await db.open_table(CHECKPOINT_TABLE)
        await table.delete(f"revision = {sql_string(revision)}")


async def snapshot(db: lancedb.AsyncConnection) -> Snapshot:
    collections: dict[str, CollectionInfo] = {}
    for name in sorted(await table_names(db)):
        if name.startswith(RESERVED_PREFIX):
            continue
        table = await db.open_table(name)
        schema = await table.schema()
        indexes = tuple(sorted(ix.name for ix in await table.list_indices()))
        columns = {f.name: str(f.type) for f in schema}
        collections[name] = CollectionInfo(columns, indexes)
    return Snapshot(collections)


async def row_counts(db: lancedb.AsyncConnection) -> dict[str, int | None]:
    """Rows per collection from each table's manifest (count_rows without a filter adds up
    the fragments' recorded counts; no data file is scanned)."""
    counts: dict[str, int | None] = {}
    for name in sorted(await table_names(db)):
        if not name.startswith(RESERVED_PREFIX):
            counts[name] = await (await db.open_table(name)).count_rows()
    return counts
