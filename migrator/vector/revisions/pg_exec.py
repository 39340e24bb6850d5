"""Apply revisions to one pgvector dataset (an asyncpg connection and the dataset's schema).

Consecutive revisions that hold only transactional DDL commit in one transaction together with
their history rows: all of them or none. A revision with a backfill or a concurrent index build
runs in phases instead: its DDL commits, then each backfill batch with its checkpoint, a
concurrent build outside any transaction, and its history row last. Every phase is idempotent,
so a revision killed half-way is replayed from the top and finds its done work done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from migrator.vector.revisions import pg_store
from migrator.vector.revisions.chain import RevisionChain
from migrator.vector.revisions.errors import RevisionApplyError
from migrator.vector.revisions.history import (
    AppliedRevisions,
    DatasetContext,
    OnRevision,
    carried_revisions,
)
from migrator.vector.revisions.ops import (
    Backfill,
    CreateIndex,
    DropIndex,
    Operation,
    RenameColumn,
    is_phased,
)
from migrator.vector.revisions.pg_backfill import run_backfill
from migrator.vector.revisions.pg_sql import PgSql, quote_ident
from migrator.vector.revisions.plan import plan_revision
from migrator.vector.revisions.providers import PGVECTOR
from migrator.vector.revisions.script import Revision

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Session:
    conn: asyncpg.Connection
    sql: PgSql
    context: DatasetContext
    on_revision: OnRevision | None
    finished: list[tuple[str, str, float]] = field(default_factory=list)


async def current_pgvector(
    conn: asyncpg.Connection, schema: str, chain: RevisionChain
) -> str | None:
    """The dataset's current revision by its own record (None: nothing applied); a dataset
    that only has a legacy integer version reads as the revisions that version stands for."""
    sql = PgSql(schema, "public")  # the vector schema plays no part in reading the record
    if not await pg_store.history_exists(conn, sql):
        return chain.current_of(
            carried_revisions(await pg_store.legacy_version(conn, sql), chain.ids())
        )
    return chain.current_of(await pg_store.applied_revisions(conn, sql))


async def stamp_pgvector(
    conn: asyncpg.Connection, schema: str, chain: RevisionChain, revision: str | None
) -> None:
    """Record the dataset at ``revision`` without running anything (for repair), in one
    transaction: the chain up to it is recorded, anything else recorded is forgotten."""
    sql = PgSql(schema, "public")
    await _carry_legacy(conn, sql, chain)
    wanted = chain.ids()[: chain.position(revision, "stamp target")]
    async with conn.transaction():
        recorded = await pg_store.applied_revisions(conn, sql)
        for rev in wanted:
            if rev not in recorded:
                await pg_store.record_revision(conn, sql, rev, 0.0)
        for rev in set(recorded) - set(wanted):
            await pg_store.forget_revision(conn, sql, rev)


async def _carry_legacy(conn: asyncpg.Connection, sql: PgSql, chain: RevisionChain) -> None:
    """Create the record; a dataset with only a legacy integer version gets the rows that
    version stands for in the same transaction, once."""
    fresh = not await pg_store.history_exists(conn, sql)
    await pg_store.ensure_tables(conn, sql)
    if not fresh:
        return
    carried = carried_revisions(await pg_store.legacy_version(conn, sql), chain.ids())
    async with conn.transaction():
        for rev in carried:
            await pg_store.record_revision(conn, sql, rev, 0.0)
    if carried:
        log.info(
            "pgvector %s at legacy vector version %d carried onto %s.",
            sql.schema,
            len(carried),
            carried[-1],
        )


async def upgrade_pgvector(
    conn: asyncpg.Connection,
    schema: str,
    chain: RevisionChain,
    context: DatasetContext,
    target: str | None = None,
    on_revision: OnRevision | None = None,
) -> AppliedRevisions:
    """Bring the dataset's schema from its recorded revision up to ``target`` (default head)."""
    session = await _open(conn, schema, chain, context, on_revision)
    before = await current_pgvector(conn, schema, chain)
    await _apply(session, chain.upgrade_path(before, target), "upgrade")
    return AppliedRevisions(before, await current_pgvector(conn, schema, chain), _done(session))


async def downgrade_pgvector(
    conn: asyncpg.Connection,
    schema: str,
    chain: RevisionChain,
    context: DatasetContext,
    target: str | None,
    on_revision: OnRevision | None = None,
) -> AppliedRevisions:
    """Undo revisions down to ``target`` (None: base), newest first, in the same phases."""
    session = await _open(conn, schema, chain, context, on_revision)
    before = await current_pgvector(conn, schema, chain)
    await _apply(session, chain.downgrade_path(before, target), "downgrade")
    return AppliedRevisions(before, await current_pgvector(conn, schema, chain), _done(session))


async def plan_pgvector(
    conn: asyncpg.Connection,
    schema: str,
    context: DatasetContext,
    revision: Revision,
    direction: str = "upgrade",
) -> list[Operation]:
    """What ``revision`` would do to the dataset as it is now, executing nothing."""
    return plan_revision(
        revision, direction, PGVECTOR, context, await pg_store.snapshot(conn, schema)
    )


async def _open(
    conn: asyncpg.Connection,
    schema: str,
    chain: RevisionChain,
    context: DatasetContext,
    on_revision: OnRevision | None,
) -> _Session:
    sql = PgSql(schema, await pg_store.ensure_extension(conn))
    await _carry_legacy(conn, sql, chain)
    return _Session(conn, sql, context, on_revision)


def _done(session: _Session) -> tuple[str, ...]:
    return tuple(revision for revision, _, _ in session.finished)


async def _apply(session: _Session, path: Sequence[Revision], direction: str) -> None:
    """Group transactional revisions into one transaction; run phased ones alone."""
    conn = session.conn
    pending: list[tuple[str, str, float]] = []
    transaction = None
    try:
        for revision in path:
            if transaction is None:
                transaction = conn.transaction()
                await transaction.start()
                await _search_path(session)
            started = time.perf_counter()
            recorded = await plan_pgvector(
                conn, session.sql.schema, session.context, revision, direction
            )
            if any(is_phased(op) for op in recorded):
                await transaction.commit()
                transaction = None
                _report(session, pending)
                await _phased(session, revision, recorded, direction, started)
                continue
            for step, op in enumerate(recorded):
                await _statement(session, revision.revision, step, op)
            duration_ms = await _close_revision(session, revision.revision, direction, started)
            pending.append((revision.revision, direction, duration_ms))
        if transaction is not None:
            await transaction.commit()
            transaction = None
            _report(session, pending)
    finally:
        if transaction is not None:
            await transaction.rollback()


async def _phased(
    session: _Session,
    revision: Revision,
    recorded: Sequence[Operation],
    direction: str,
    started: float,
) -> None:
    conn = session.conn
    step = 0
    while step < len(recorded):
        op = recorded[step]
        if isinstance(op, Backfill):
            await _guard(
                revision.revision, op, run_backfill(conn, session.sql, revision.revision, step, op)
            )
            step += 1
        elif is_phased(op):
            await _concurrent(session, revision.revision, step, op)
            step += 1
        else:
            async with conn.transaction():
                await _search_path(session)
                while step < len(recorded) and not is_phased(recorded[step]):
                    await _statement(session, revision.revision, step, recorded[step])
                    step += 1
    async with conn.transaction():
        duration_ms = await _close_revision(session, revision.revision, direction, started)
    _report(session, [(revision.revision, direction, duration_ms)])


async def _statement(session: _Session, revision: str, step: int, op: Operation) -> None:
    conn = session.conn
    if isinstance(op, RenameColumn) and not await pg_store.column_exists(
        conn, session.sql.schema, op.collection, op.name
    ):
        return  # renamed already (a replayed phase); a missing column fails below otherwise
    args = getattr(op, "args", ())
    for statement in session.sql.statements(op):
        await _guard(revision, op, conn.execute(statement, *args))


async def _concurrent(session: _Session, revision: str, step: int, op: Operation) -> None:
    assert isinstance(op, CreateIndex | DropIndex)
    if isinstance(op, CreateIndex):
        valid = await pg_store.index_validity(session.conn, session.sql.schema, op.name)
        if valid is False:
            # A build killed half-way leaves an INVALID index that IF NOT EXISTS would keep.
            drop = f"DROP INDEX CONCURRENTLY IF EXISTS {session.sql.table(op.name)}"
            await _guard(revision, op, session.conn.execute(drop))
    for statement in session.sql.statements(op):
        await _guard(revision, op, session.conn.execute(statement))


async def _close_revision(
    session: _Session, revision: str, direction: str, started: float
) -> float:
    duration_ms = (time.perf_counter() - started) * 1000
    if direction == "upgrade":
        await pg_store.record_revision(session.conn, session.sql, revision, duration_ms)
    else:
        await pg_store.forget_revision(session.conn, session.sql, revision)
    return duration_ms


async def _search_path(session: _Session) -> None:
    # op.execute's SQL names the application's tables unqualified, as it would in a psql session.
    path = f"{quote_ident(session.sql.schema)}, {session.sql.vector_schema}"
    await session.conn.execute(f"SET LOCAL search_path TO {path}")


async def _guard(revision: str, op: Operation, awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except Exception as exc:
        raise RevisionApplyError(revision, op.describe(), exc) from exc


def _report(session: _Session, committed: list[tuple[str, str, float]]) -> None:
    for revision, direction, duration_ms in committed:
        log.debug("pgvector %s %s in %.0f ms.", direction, revision, duration_ms)
        session.finished.append((revision, direction, duration_ms))
        if session.on_revision is not None:
            session.on_revision(revision, direction, duration_ms)
    committed.clear()
