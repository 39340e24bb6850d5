"""Apply revisions to one LanceDB dataset directory.

Each operation is one LanceDB commit and idempotent: re-applied after a crash it finds its work
done (the table, column or index is there) and does nothing. The revision's history row is
written last. Crash window: a crash after some operations of a revision and before its row
leaves those operations applied and the revision unrecorded; the next run replays the revision,
and every replayed operation is a no-op. Nothing is read whole, dropped and written back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import lancedb
import pyarrow as pa

from migrator.vector.revisions import lance_backfill, lance_store
from migrator.vector.revisions.chain import RevisionChain
from migrator.vector.revisions.errors import RevisionApplyError
from migrator.vector.revisions.history import (
    AppliedRevisions,
    DatasetContext,
    OnRevision,
    carried_revisions,
)
from migrator.vector.revisions.ops import (
    AddColumn,
    AlterColumn,
    Backfill,
    CreateCollection,
    CreateIndex,
    DropCollection,
    DropColumn,
    DropIndex,
    Execute,
    Native,
    Operation,
    RenameColumn,
)
from migrator.vector.revisions.plan import plan_revision
from migrator.vector.revisions.providers import LANCEDB, lance_index_config
from migrator.vector.revisions.resources import HeavyOptions, OperationProgress, RateLimiter
from migrator.vector.revisions.script import Revision
from migrator.vector.revisions.types import lance_default_sql, to_arrow

log = logging.getLogger(__name__)


async def current_lancedb(db: lancedb.AsyncConnection, chain: RevisionChain) -> str | None:
    """The dataset's current revision by its own record (None: nothing applied); a dataset
    that only has a legacy integer version reads as the revisions that version stands for."""
    if not await lance_store.history_exists(db):
        return chain.current_of(
            carried_revisions(await lance_store.legacy_version(db), chain.ids())
        )
    return chain.current_of(await lance_store.applied_revisions(db))


async def stamp_lancedb(
    db: lancedb.AsyncConnection, chain: RevisionChain, revision: str | None
) -> None:
    """Record the dataset at ``revision`` without running anything (for repair): the chain up
    to it is recorded, anything else recorded (even unknown ids) is forgotten."""
    await _carry_legacy(db, chain)
    wanted = chain.ids()[: chain.position(revision, "stamp target")]
    recorded = await lance_store.applied_revisions(db)
    for rev in wanted:
        if rev not in recorded:
            await lance_store.record_revision(db, rev, 0.0)
    for rev in set(recorded) - set(wanted):
        await lance_store.forget_revision(db, rev)
        await lance_store.clear_checkpoints(db, rev)


async def _carry_legacy(db: lancedb.AsyncConnection, chain: RevisionChain) -> None:
    """Write the rows a legacy integer version stands for, once, before any revision runs."""
    if await lance_store.history_exists(db):
        return
    carried = carried_revisions(await lance_store.legacy_version(db), chain.ids())
    for rev in carried:
        await lance_store.record_revision(db, rev, 0.0)
    if carried:
        log.info(
            "LanceDB dataset at legacy vector version %d carried onto %s.",
            len(carried),
            carried[-1],
        )


async def upgrade_lancedb(
    db: lancedb.AsyncConnection,
    chain: RevisionChain,
    context: DatasetContext,
    target: str | None = None,
    on_revision: OnRevision | None = None,
    heavy: HeavyOptions | None = None,
) -> AppliedRevisions:
    """Bring the dataset from its recorded revision up to ``target`` (default: head)."""
    await _carry_legacy(db, chain)
    before = await current_lancedb(db, chain)
    done: list[str] = []
    for revision in chain.upgrade_path(before, target):
        await _run(db, context, revision, "upgrade", on_revision, heavy or HeavyOptions())
        done.append(revision.revision)
    return AppliedRevisions(before, await current_lancedb(db, chain), tuple(done))


async def downgrade_lancedb(
    db: lancedb.AsyncConnection,
    chain: RevisionChain,
    context: DatasetContext,
    target: str | None,
    on_revision: OnRevision | None = None,
    heavy: HeavyOptions | None = None,
) -> AppliedRevisions:
    """Undo revisions down to ``target`` (None: base), newest first."""
    await _carry_legacy(db, chain)
    before = await current_lancedb(db, chain)
    done: list[str] = []
    for revision in chain.downgrade_path(before, target):
        await _run(db, context, revision, "downgrade", on_revision, heavy or HeavyOptions())
        done.append(revision.revision)
    return AppliedRevisions(before, await current_lancedb(db, chain), tuple(done))


async def plan_lancedb(
    db: lancedb.AsyncConnection, context: DatasetContext, revision: Revision, direction: str
) -> list[Operation]:
    """What ``revision`` would do to the dataset as it is now, executing nothing."""
    return plan_revision(revision, direction, LANCEDB, context, await lance_store.snapshot(db))


async def _run(
    db: lancedb.AsyncConnection,
    context: DatasetContext,
    revision: Revision,
    direction: str,
    on_revision: OnRevision | None,
    heavy: HeavyOptions,
) -> None:
    started = time.perf_counter()
    recorded = await plan_lancedb(db, context, revision, direction)
    for step, operation in enumerate(recorded):
        try:
            await _execute(db, revision.revision, step, operation, heavy)
        except Exception as exc:
            raise RevisionApplyError(revision.revision, operation.describe(), exc) from exc
    duration_ms = (time.perf_counter() - started) * 1000
    if direction == "upgrade":
        await lance_store.record_revision(db, revision.revision, duration_ms)
    else:
        await lance_store.forget_revision(db, revision.revision)
    # After the row: a crash in between leaves stale checkpoints that only this revision reads,
    # and a later re-apply (after a downgrade) must start its backfills afresh.
    await lance_store.clear_checkpoints(db, revision.revision)
    log.debug("LanceDB %s %s in %.0f ms.", direction, revision.revision, duration_ms)
    if on_revision is not None:
        on_revision(revision.revision, direction, duration_ms)


async def _execute(
    db: lancedb.AsyncConnection, revision: str, step: int, op: Operation, heavy: HeavyOptions
) -> None:
    if isinstance(op, CreateCollection | DropCollection):
        await _collection(db, op)
    elif isinstance(op, Backfill):
        await _backfill(db, revision, step, op, heavy)
    elif isinstance(op, Native):
        outcome = op.fn(db)
        if inspect.isawaitable(outcome):
            await outcome
    elif isinstance(op, Execute):
        raise ValueError("op.execute is pgvector only")
    else:
        await _table_op(await db.open_table(op.collection), op)


async def _collection(db: lancedb.AsyncConnection, op: CreateCollection | DropCollection) -> None:
    present = op.name in await lance_store.table_names(db)
    if isinstance(op, DropCollection):
        if present:
            await db.drop_table(op.name)
        return
    if not present:
        fields = [
            pa.field(f.name, to_arrow(f.type), nullable=f.nullable and f.name != op.primary_key)
            for f in op.fields
        ]
        await db.create_table(op.name, schema=pa.schema(fields), exist_ok=True)


async def _table_op(table: Any, op: Operation) -> None:
    schema: pa.Schema = await table.schema()
    have = set(schema.names)
    if isinstance(op, AddColumn):
        await _add_column(table, have, op)
    elif isinstance(op, DropColumn) and op.name in have:
        await table.drop_columns([op.name])
    elif isinstance(op, RenameColumn) and op.name in have:
        await table.alter_columns({"path": op.name, "rename": op.new_name})
    elif isinstance(op, RenameColumn) and op.new_name not in have:
        raise ValueError(f"neither {op.name!r} nor {op.new_name!r} exists")
    elif isinstance(op, AlterColumn):
        await _alter(table, schema, op)
    elif isinstance(op, CreateIndex | DropIndex):
        await _index(table, op)


async def _add_column(table: Any, have: set[str], op: AddColumn) -> None:
    if op.name not in have:
        if op.type.is_vector or op.type.name == "list<string>":
            await table.add_columns(pa.field(op.name, to_arrow(op.type), nullable=True))
        else:
            await table.add_columns({op.name: lance_default_sql(op.type, op.default)})
    # A constant SQL default comes out NOT NULL; a nullable column asked for stays nullable.
    if op.nullable and not (await table.schema()).field(op.name).nullable:
        await table.alter_columns({"path": op.name, "nullable": True})


async def _alter(table: Any, schema: pa.Schema, op: AlterColumn) -> None:
    field = schema.field(op.name)
    change: dict[str, Any] = {}
    if op.type is not None and field.type != to_arrow(op.type):
        change["data_type"] = to_arrow(op.type)
    if op.nullable is not None and field.nullable != op.nullable:
        change["nullable"] = op.nullable
    if change:
        await table.alter_columns({"path": op.name, **change})


async def _index(table: Any, op: CreateIndex | DropIndex) -> None:
    names = {ix.name for ix in await table.list_indices()}
    if isinstance(op, DropIndex):
        if op.name in names:
            await table.drop_index(op.name)
        return
    if op.name not in names:
        config = lance_index_config(op)
        await table.create_index(op.columns[0], config=config, name=op.name, replace=False)


async def _backfill(
    db: lancedb.AsyncConnection, revision: str, step: int, op: Backfill, heavy: HeavyOptions
) -> None:
    # A URI, not a Path: the root may be an object store (s3://...), opened with the options
    # the connection was opened with (endpoint, credentials from settings).
    path = f"{db.uri.rstrip('/')}/{op.collection}.lance"
    table = await db.open_table(op.collection)
    options: dict[str, str] = dict(await table.initial_storage_options() or {})
    done = await lance_store.checkpoints(db, revision, step)
    fragments = await asyncio.to_thread(lance_backfill.fragment_rows, path, options)
    resources = heavy.resources
    limiter = RateLimiter(resources.rate_limit(op.rate_limit_rows_s))
    total = None if op.where else sum(fragments.values())
    rows_done = sum(rows for fragment_id, rows in fragments.items() if str(fragment_id) in done)
    for fragment_id, rows in fragments.items():
        if str(fragment_id) in done:
            continue
        await asyncio.to_thread(
            lance_backfill.backfill_fragment,
            path,
            fragment_id,
            op,
            options,
            resources.batch_rows(op.batch_size),
            limiter,
        )
        await lance_store.save_checkpoint(db, revision, step, str(fragment_id))
        rows_done += rows
        log.debug("Backfill %s.%s: fragment %d done.", op.collection, op.column, fragment_id)
        if heavy.on_progress is not None:
            progress = OperationProgress(
                f"backfill {op.collection}.{op.column}", None, rows_done, total, "rows"
            )
            heavy.on_progress(progress)
