"""Index builds seen from the server: ``pg_stat_progress_create_index``.

Two jobs. While this migrator builds an index, a side connection samples the building
backend's row every few seconds and reports it (phase, blocks or tuples done of total). Before
it builds, a half-built (INVALID) index of the same name is told apart: still being built by a
live backend (its row is in the view), or left by a build that died (no row): only the dead
one may be dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from migrator.vector.revisions.resources import OnProgress, OperationProgress

log = logging.getLogger(__name__)

SideConnect = Callable[[], Awaitable[asyncpg.Connection]]

SAMPLE = (
    "SELECT p.phase, p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done, "
    "c.reltuples FROM pg_stat_progress_create_index p "
    "LEFT JOIN pg_class c ON c.oid = p.relid WHERE p.pid = $1"
)
# A build of this index by any other backend: the view's row names the index once it exists
# in the catalog, which an INVALID leftover does.
LIVE_BUILD = (
    "SELECT p.pid, p.phase FROM pg_stat_progress_create_index p "
    "JOIN pg_class c ON c.oid = p.index_relid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relname = $2 AND p.pid <> pg_backend_pid() "
    "ORDER BY p.pid LIMIT 1"
)


@dataclass(frozen=True)
class LiveBuild:
    """Another backend building the index now."""

    pid: int
    phase: str


async def live_build(conn: asyncpg.Connection, schema: str, index: str) -> LiveBuild | None:
    """The backend building ``schema.index`` now, other than this session; None when none."""
    row = await conn.fetchrow(LIVE_BUILD, schema, index)
    return LiveBuild(int(row["pid"]), str(row["phase"])) if row is not None else None


def progress_of(operation: str, row: asyncpg.Record) -> OperationProgress:
    """One view row as progress. Tuples of the server's total when it gives one (btree's
    sort, a concurrent build's validation); tuples inserted of the table's estimated rows
    when the access method counts them without a total (pgvector's HNSW and IVFFlat): blocks
    scanned would mislead there, as a table with dead tuples (after a backfill) is scanned
    far ahead of the graph; else blocks scanned of the table's."""
    tuples_done = int(row["tuples_done"] or 0)
    estimate = round(row["reltuples"] or 0)
    if row["tuples_total"]:
        done, total, unit = tuples_done, int(row["tuples_total"]), "tuples"
    elif tuples_done and estimate > 0:
        done, total, unit = tuples_done, max(estimate, tuples_done), "tuples"
    elif row["blocks_total"]:
        done, total, unit = int(row["blocks_done"]), int(row["blocks_total"]), "blocks"
    else:
        done, total, unit = tuples_done, None, "tuples"
    return OperationProgress(operation, str(row["phase"]), done, total, unit)


@contextlib.asynccontextmanager
async def watching(
    connect: SideConnect | None,
    pid: int,
    operation: str,
    on_progress: OnProgress | None,
    interval_s: float,
) -> AsyncIterator[None]:
    """Report backend ``pid``'s build every ``interval_s`` while the block runs. Sampling is
    best effort: a failed sample is logged and ends the sampling, never the build."""
    if connect is None or on_progress is None:
        yield
        return
    task = asyncio.create_task(_sample(connect, pid, operation, on_progress, interval_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sample(
    connect: SideConnect,
    pid: int,
    operation: str,
    on_progress: OnProgress,
    interval_s: float,
) -> None:
    conn: asyncpg.Connection | None = None
    try:
        # A build done within one interval (most of a fleet's) never opens the side session.
        await asyncio.sleep(interval_s)
        conn = await connect()
        while True:
            row = await conn.fetchrow(SAMPLE, pid)
            if row is not None:
                on_progress(progress_of(operation, row))
            await asyncio.sleep(interval_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # progress is a view of the work, never a reason to stop it
        log.warning("Index build progress of %s not sampled: %s: %s", operation, type(exc), exc)
    finally:
        if conn is not None:
            conn.terminate()  # a side session: nothing to finish, and no wait while cancelled


async def wait_for_live_build(
    conn: asyncpg.Connection,
    schema: str,
    index: str,
    *,
    wait_s: float,
    interval_s: float,
    on_progress: OnProgress | None,
    operation: str,
) -> LiveBuild | None:
    """Wait up to ``wait_s`` while another backend builds the index, reporting its progress;
    the build still running after that (None: none is, or it ended)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = await live_build(conn, schema, index)
        if found is None or time.monotonic() >= deadline:
            return found
        log.info(
            "Index %s.%s is being built by server process %d (%s); waiting.",
            schema,
            index,
            found.pid,
            found.phase,
        )
        if on_progress is not None:
            row = await conn.fetchrow(SAMPLE, found.pid)
            if row is not None:
                on_progress(progress_of(f"{operation} (server process {found.pid})", row))
        await asyncio.sleep(max(0.05, min(interval_s, deadline - time.monotonic())))
