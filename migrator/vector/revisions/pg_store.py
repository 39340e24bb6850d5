"""The pgvector side of the revision record: the extension, history and checkpoint tables, the
snapshot. Everything lives in the dataset's schema; identifiers are validated and quoted."""

from __future__ import annotations

import asyncpg

from migrator.errors import VectorExtensionUnavailableError
from migrator.vector.revisions.history import (
    CHECKPOINT_TABLE,
    HISTORY_TABLE,
    LEGACY_VERSION_TABLE,
    migrator_version,
)
from migrator.vector.revisions.pg_sql import PgSql, quote_ident
from migrator.vector.revisions.providers import RESERVED_PREFIX
from migrator.vector.revisions.snapshot import CollectionInfo, Snapshot

# The adapter's keys (two-int4 advisory lock form): datasets sharing a database take turns
# creating the extension, whichever code path gets there first.
ADVISORY_NAMESPACE = 0x6D696772  # "migr"
EXTENSION_LOCK_KEY = 1
EXTENSION_MISSING = (
    asyncpg.FeatureNotSupportedError,
    asyncpg.UndefinedFileError,
    asyncpg.InsufficientPrivilegeError,
)


async def ensure_extension(conn: asyncpg.Connection) -> str:
    """Create ``vector`` when missing; the schema its types live in."""
    found = await _extension_schema(conn)
    if found is not None:
        return found
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", ADVISORY_NAMESPACE, EXTENSION_LOCK_KEY
            )
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except EXTENSION_MISSING as exc:
        raise VectorExtensionUnavailableError(
            f"cannot create the 'vector' extension: {str(exc).splitlines()[0]}"
        ) from exc
    found = await _extension_schema(conn)
    assert found is not None, "CREATE EXTENSION succeeded, so pg_extension lists it"
    return found


async def _extension_schema(conn: asyncpg.Connection) -> str | None:
    schema: str | None = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    return schema


async def ensure_tables(conn: asyncpg.Connection, sql: PgSql) -> None:
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(sql.schema)}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {sql.table(HISTORY_TABLE)} ("
            "revision text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), "
            "duration_ms double precision NOT NULL, migrator_version text NOT NULL)"
        )
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {sql.table(CHECKPOINT_TABLE)} ("
            "revision text NOT NULL, step integer NOT NULL, position text NOT NULL, "
            "saved_at timestamptz NOT NULL DEFAULT now(), "
            "rows_done bigint NOT NULL DEFAULT 0, PRIMARY KEY (revision, step))"
        )
        # Added later: datasets made before it get the column (catalog only, no rewrite).
        # Looked up first: ALTER ... IF NOT EXISTS would take a lock and a transaction id on
        # every run, turning this read-only check into a write.
        if not await column_exists(conn, sql.schema, CHECKPOINT_TABLE, "rows_done"):
            await conn.execute(
                f"ALTER TABLE {sql.table(CHECKPOINT_TABLE)} "
                "ADD COLUMN rows_done bigint NOT NULL DEFAULT 0"
            )


async def history_exists(conn: asyncpg.Connection, sql: PgSql) -> bool:
    return await conn.fetchval("SELECT to_regclass($1)", sql.table(HISTORY_TABLE)) is not None


async def applied_revisions(conn: asyncpg.Connection, sql: PgSql) -> list[str]:
    table = sql.table(HISTORY_TABLE)
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return []
    return [r["revision"] for r in await conn.fetch(f"SELECT revision FROM {table}")]


async def legacy_version(conn: asyncpg.Connection, sql: PgSql) -> int:
    """The integer version the adapter recorded before revisions existed; 0 when none."""
    table = sql.table(LEGACY_VERSION_TABLE)
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return 0
    return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}"))


async def record_revision(
    conn: asyncpg.Connection, sql: PgSql, revision: str, duration_ms: float
) -> None:
    """The revision's row and the end of its checkpoints; called inside a transaction."""
    await conn.execute(
        f"INSERT INTO {sql.table(HISTORY_TABLE)} (revision, duration_ms, migrator_version) "
        "VALUES ($1, $2, $3) ON CONFLICT (revision) DO NOTHING",
        revision,
        duration_ms,
        migrator_version(),
    )
    await clear_checkpoints(conn, sql, revision)


async def forget_revision(conn: asyncpg.Connection, sql: PgSql, revision: str) -> None:
    await conn.execute(f"DELETE FROM {sql.table(HISTORY_TABLE)} WHERE revision = $1", revision)
    await clear_checkpoints(conn, sql, revision)


async def clear_checkpoints(conn: asyncpg.Connection, sql: PgSql, revision: str) -> None:
    await conn.execute(f"DELETE FROM {sql.table(CHECKPOINT_TABLE)} WHERE revision = $1", revision)


async def checkpoint(conn: asyncpg.Connection, sql: PgSql, revision: str, step: int) -> str | None:
    position: str | None = await conn.fetchval(
        f"SELECT position FROM {sql.table(CHECKPOINT_TABLE)} WHERE revision = $1 AND step = $2",
        revision,
        step,
    )
    return position


async def checkpoint_rows(
    conn: asyncpg.Connection, sql: PgSql, revision: str, step: int
) -> tuple[str | None, int]:
    """The backfill's last position (None: not started) and the rows it had done by then."""
    row = await conn.fetchrow(
        f"SELECT position, rows_done FROM {sql.table(CHECKPOINT_TABLE)} "
        "WHERE revision = $1 AND step = $2",
        revision,
        step,
    )
    return (None, 0) if row is None else (str(row["position"]), int(row["rows_done"]))


async def save_checkpoint(
    conn: asyncpg.Connection,
    sql: PgSql,
    revision: str,
    step: int,
    position: str,
    rows_done: int = 0,
) -> None:
    await conn.execute(
        f"INSERT INTO {sql.table(CHECKPOINT_TABLE)} (revision, step, position, rows_done) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (revision, step) "
        "DO UPDATE SET position = excluded.position, rows_done = excluded.rows_done, "
        "saved_at = now()",
        revision,
        step,
        position,
        rows_done,
    )


async def snapshot(conn: asyncpg.Connection, schema: str) -> Snapshot:
    columns = await conn.fetch(
        "SELECT c.relname AS table_name, a.attname AS column_name, "
        "format_type(a.atttypid, a.atttypmod) AS type_name "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        schema,
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
        schema,
    )
    found: dict[str, tuple[dict[str, str], list[str]]] = {}
    for row in columns:
        if not row["table_name"].startswith(RESERVED_PREFIX):
            found.setdefault(row["table_name"], ({}, []))[0][row["column_name"]] = row["type_name"]
    for row in indexes:
        if row["tablename"] in found:
            found[row["tablename"]][1].append(row["indexname"])
    return Snapshot({t: CollectionInfo(c, tuple(i)) for t, (c, i) in found.items()})


async def column_exists(conn: asyncpg.Connection, schema: str, table: str, column: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2 AND column_name = $3)",
            schema,
            table,
            column,
        )
    )


async def index_validity(conn: asyncpg.Connection, schema: str, name: str) -> bool | None:
    """True/False for a valid/invalid (half-built concurrent) index, None when absent."""
    valid: bool | None = await conn.fetchval(
        "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        schema,
        name,
    )
    return valid


async def row_estimates(conn: asyncpg.Connection, schema: str) -> dict[str, int | None]:
    """Rows per collection as the server estimates them, never counted: ``reltuples`` once
    the table was analysed or vacuumed, else the live tuples pg_stat tracked; None when the
    server has neither yet (a table never analysed, whose statistics were not flushed). A table
    whose file is empty has 0 rows."""
    found = await conn.fetch(
        "SELECT c.relname, s.n_live_tup, pg_relation_size(c.oid) AS bytes, "
        # The planner's own estimate: rows per page when last analysed, times today's pages.
        "CASE WHEN c.relpages > 0 THEN c.reltuples / c.relpages * "
        "(pg_relation_size(c.oid) / current_setting('block_size')::int) "
        "ELSE c.reltuples END AS reltuples, "
        "coalesce(s.n_tup_ins + s.n_tup_del + s.n_tup_upd, 0) AS changes "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        schema,
    )
    counts: dict[str, int | None] = {}
    for row in found:
        if row["relname"].startswith(RESERVED_PREFIX):
            continue
        if row["reltuples"] >= 0:  # -1: never analysed (PostgreSQL 14 and later)
            counts[row["relname"]] = round(row["reltuples"])
        elif row["bytes"] == 0:  # the file's size, not a scan: nothing was ever written
            counts[row["relname"]] = 0
        elif row["changes"] or row["n_live_tup"]:
            counts[row["relname"]] = int(row["n_live_tup"])
        else:
            counts[row["relname"]] = None
    return counts
