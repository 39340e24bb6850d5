"""Apply revisions to one pgvector dataset (an asyncpg connection and the dataset's schema).

Consecutive revisions that hold only transactional DDL commit in one transaction together with
their history rows: all of them or none. A revision with a backfill or a concurrent index build
runs in phases instead: its DDL commits, then each backfill batch with its checkpoint, a
concurrent build outside any transaction, and its history row last. Every phase is idempotent,
so a revision killed half-way is replayed from the top and finds its done work done.

Index builds run with the session settings their resources ask for (maintenance_work_mem,
max_parallel_maintenance_workers), reset afterwards; while one runs a side connection samples
its progress. A concurrent build that finds an INVALID index of its name waits while another
server process still builds it, and drops and rebuilds it when that build is dead.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from migrator.vector.revisions import pg_store, pg_watch
from migrator.vector.revisions.chain import RevisionChain
from migrator.vector.revisions.errors import IndexBuildInProgressError, RevisionApplyError
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
from migrator.vector.revisions.resources import HeavyOptions, OnProgress, Resources
from migrator.vector.revisions.script import Revision

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Session:
    conn: asyncpg.Connection
    sql: PgSql
    context: DatasetContext
    on_revision: OnRevision | None
    resources: Resources = field(default_factory=Resources)
    on_progress: OnProgress | None = None
    side_connect: pg_watch.SideConnect | None = None
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
    heavy: HeavyOptions | None = None,
    side_connect: pg_watch.SideConnect | None = None,
) -> AppliedRevisions:
    """Bring the dataset's schema from its recorded revision up to ``target`` (default head)."""
    session = await _open(conn, schema, chain, context, on_revision, heavy, side_connect)
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
    heavy: HeavyOptions | None = None,
    side_connect: pg_watch.SideConnect | None = None,
) -> AppliedRevisions:
    """Undo revisions down to ``target`` (None: base), newest first, in the same phases."""
    session = await _open(conn, schema, chain, context, on_revision, heavy, side_connect)
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
    heavy: HeavyOptions | None,
    side_connect: pg_watch.SideConnect | None,
) -> _Session:
    sql = PgSql(schema, await pg_store.ensure_extension(conn))
    await _carry_legacy(conn, sql, chain)
    heavy = heavy or HeavyOptions()
    return _Session(
        conn,
        sql,
        context,
        on_revision,
        heavy.resources,
        heavy.on_progress,
        side_connect,
    )


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
            backfill = run_backfill(
                conn,
                session.sql,
                revision.revision,
                step,
                op,
                session.resources,
                session.on_progress,
            )
            await _guard(revision.revision, op, backfill)
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
    if isinstance(op, CreateIndex):
        await _guard(revision, op, _build(session, op, local=True))
        return
    args = getattr(op, "args", ())
    for statement in session.sql.statements(op):
        await _guard(revision, op, conn.execute(statement, *args))


async def _concurrent(session: _Session, revision: str, step: int, op: Operation) -> None:
    assert isinstance(op, CreateIndex | DropIndex)
    if isinstance(op, DropIndex):
        for statement in session.sql.statements(op):
            await _guard(revision, op, session.conn.execute(statement))
        return
    await _guard(revision, op, _clear_leftover(session, op))
    await _guard(revision, op, _build(session, op, local=False))


async def _clear_leftover(session: _Session, op: CreateIndex) -> None:
    """Drop a dead build's INVALID index (IF NOT EXISTS would keep it); wait while a live one
    finishes, and leave it alone if it does not within ``live_build_wait_s``."""
    conn, schema = session.conn, session.sql.schema
    if await pg_store.index_validity(conn, schema, op.name) is not False:
        return
    started = time.monotonic()
    live = await pg_watch.wait_for_live_build(
        conn,
        schema,
        op.name,
        wait_s=session.resources.live_build_wait_s,
        interval_s=session.resources.progress_interval_s,
        on_progress=session.on_progress,
        operation=_operation_name(op),
    )
    if live is not None:
        raise IndexBuildInProgressError(
            schema, op.name, live.pid, live.phase, time.monotonic() - started
        )
    if await pg_store.index_validity(conn, schema, op.name) is False:
        log.info("Index %s.%s: dropping the INVALID leftover of a dead build.", schema, op.name)
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {session.sql.table(op.name)}")


async def _build(session: _Session, op: CreateIndex, *, local: bool) -> None:
    """CREATE INDEX with its session settings, progress sampled and the server's notices
    logged meanwhile. Inside the revision's transaction the settings are SET LOCAL and put
    back after (a rollback undoes them anyway); a concurrent build runs outside any
    transaction, so they are SET on the session and RESET after."""
    conn = session.conn
    settings = session.resources.index_settings(op.maintenance_work_mem, op.parallel_workers)
    before = {name: await conn.fetchval("SELECT current_setting($1)", name) for name in settings}
    for name, value in settings.items():
        await conn.execute("SELECT set_config($1, $2, $3)", name, value, local)
    notices = _NoticeLog(f"{session.sql.schema}.{op.name}", settings)
    conn.add_log_listener(notices)
    try:
        async with pg_watch.watching(
            session.side_connect,
            conn.get_server_pid(),
            _operation_name(op),
            session.on_progress,
            session.resources.progress_interval_s,
        ):
            for statement in session.sql.statements(op):
                await conn.execute(statement)
    finally:
        conn.remove_log_listener(notices)
        if settings and not conn.is_closed():
            # After a cancelled build the connection may refuse; the adapter drops it then.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                await _restore(conn, before, local)


async def _restore(conn: asyncpg.Connection, before: dict[str, str], local: bool) -> None:
    for name, value in before.items():
        if local:
            await conn.execute("SELECT set_config($1, $2, true)", name, value)
        else:
            await conn.execute(f"RESET {name}")


class _NoticeLog:
    """Logs what the server says during a build: pgvector's "hnsw graph no longer fits into
    maintenance_work_mem" is the hint that the build will be slow and wants more memory."""

    def __init__(self, index: str, settings: dict[str, str]) -> None:
        self.index = index
        self.settings = ", ".join(f"{k}={v}" for k, v in settings.items()) or "server defaults"

    def __call__(self, _conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = str(getattr(message, "message", message))
        # The memory hint is worth a warning; "already exists, skipping" and the like are not.
        level = logging.WARNING if "maintenance_work_mem" in text else logging.INFO
        log.log(level, "Index build %s (%s): the server says: %s", self.index, self.settings, text)


def _operation_name(op: CreateIndex) -> str:
    return f"create_index {op.kind} {op.name}"


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
