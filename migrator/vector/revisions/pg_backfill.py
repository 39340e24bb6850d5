"""A pgvector backfill: keyset batches over the primary key, each batch's UPDATE committed
together with its checkpoint, so a killed backfill resumes exactly after its last batch.

Only the key and the source columns are read, ``batch_size`` rows at a time (unset:
BACKFILL_BATCH_ROWS); values travel as text and are cast by PostgreSQL to the column's own type
(vectors as ``[x,y,...]``). A rate limit sleeps between batches. The checkpoint also counts the
rows done, so progress (rows done of the table's estimated rows) carries across a resume.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa

from migrator.vector.revisions import pg_store
from migrator.vector.revisions.ops import Backfill
from migrator.vector.revisions.pg_sql import PgSql, quote_ident
from migrator.vector.revisions.resources import (
    OnProgress,
    OperationProgress,
    RateLimiter,
    Resources,
)

log = logging.getLogger(__name__)


async def run_backfill(
    conn: asyncpg.Connection,
    sql: PgSql,
    revision: str,
    step: int,
    op: Backfill,
    resources: Resources | None = None,
    on_progress: OnProgress | None = None,
) -> int:
    """Fill ``op.column`` batch by batch from the last checkpoint; the rows written by this
    call (a resumed backfill counts only what it wrote)."""
    resources = resources or Resources()
    batch_rows = resources.batch_rows(op.batch_size)
    key, key_type = await _primary_key(conn, sql, op.collection)
    target_type = await _column_type(conn, sql, op.collection, op.column)
    source_types = [await _column_type(conn, sql, op.collection, c) for c in op.columns]
    sources = ", ".join(_source(c, t) for c, t in zip(op.columns, source_types, strict=True))
    where = f" AND ({op.where})" if op.where else ""
    table = sql.table(op.collection)
    select = (
        f"SELECT {quote_ident(key)} AS k, {sources} FROM {table} "
        f"WHERE ($1::text IS NULL OR {quote_ident(key)} > $1::text::{key_type}){where} "
        f"ORDER BY {quote_ident(key)} LIMIT {int(batch_rows)}"
    )
    update = (
        f"UPDATE {table} AS t SET {quote_ident(op.column)} = v.val::{target_type} "
        f"FROM unnest($1::{key_type}[], $2::text[]) AS v(k, val) WHERE t.{quote_ident(key)} = v.k"
    )
    written = 0
    position, rows_done = await pg_store.checkpoint_rows(conn, sql, revision, step)
    # Where a filter picks rows, the table's size is no total: none is claimed.
    total = None
    if not op.where:
        total = (await pg_store.row_estimates(conn, sql.schema)).get(op.collection)
    operation = f"backfill {op.collection}.{op.column}"
    limiter = RateLimiter(resources.rate_limit(op.rate_limit_rows_s))
    while True:
        async with conn.transaction():
            rows = await conn.fetch(select, position)
            if not rows:
                return written
            values = _compute(op, rows, target_type.endswith("[]"))
            await conn.execute(update, [r["k"] for r in rows], values)
            position = str(rows[-1]["k"])
            rows_done += len(rows)
            await pg_store.save_checkpoint(conn, sql, revision, step, position, rows_done)
        written += len(rows)
        log.debug("Backfill %s.%s: %d rows, at %s.", op.collection, op.column, rows_done, position)
        if on_progress is not None:
            shown_total = max(total, rows_done) if total is not None else None
            on_progress(OperationProgress(operation, None, rows_done, shown_total, "rows"))
        if len(rows) < batch_rows:
            return written  # a short batch was the last one: nothing to wait for
        await limiter.wait(len(rows))


def _source(column: str, type_name: str) -> str:
    # vector -> real[] gives the function float lists, not pgvector's text form.
    cast = "::real[]" if ".vector(" in type_name else ""
    return f"{quote_ident(column)}{cast} AS {quote_ident(column)}"


async def _primary_key(conn: asyncpg.Connection, sql: PgSql, table: str) -> tuple[str, str]:
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_name "
        "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary",
        sql.table(table),
    )
    if len(rows) != 1:
        raise ValueError(f"a backfill walks a one-column primary key; {table!r} has {len(rows)}")
    return str(rows[0]["attname"]), str(rows[0]["type_name"])


async def _column_type(conn: asyncpg.Connection, sql: PgSql, table: str, column: str) -> str:
    found: str | None = await conn.fetchval(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped",
        sql.table(table),
        column,
    )
    if found is None:
        raise ValueError(f"column {column!r} does not exist in {table!r}")
    # format_type names the extension's type unqualified; qualify it for any search_path.
    return f"{sql.vector_schema}.{found}" if found.startswith("vector(") else found


def _compute(op: Backfill, rows: Sequence[asyncpg.Record], to_array: bool) -> list[str | None]:
    batch = pa.RecordBatch.from_pydict({c: [r[c] for r in rows] for c in op.columns})
    result = op.fn(batch)
    values = result.to_pylist() if isinstance(result, pa.Array) else list(result)
    if len(values) != len(rows):
        raise ValueError(f"backfill function returned {len(values)} values for {len(rows)} rows")
    return [_as_text(v, to_array) for v in values]


def _as_text(value: Any, to_array: bool) -> str | None:
    """One value in the text form PostgreSQL casts to the column's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        if to_array:  # text[]: PostgreSQL's array literal
            return "{" + ",".join(_array_item(str(x)) for x in value) + "}"
        return "[" + ",".join(repr(float(x)) for x in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if not isinstance(value, float) else repr(value)


def _array_item(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
