"""Writing and searching a tenant's notes collection, on either provider.

The migrator made the collection (``vector_migrations/``); the application only reads and writes
rows. pgvector tenants live in a schema of their own in the database their URL names, the same
schema the migrator migrates; credentials come from VECTOR_DB_USERNAME/VECTOR_DB_PASSWORD, never
from the tenants table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import asyncpg
import lancedb

from migrator.settings import Settings
from migrator.vector.pgvector_adapter import parse_url, quote_ident, schema_for

COLLECTION = "notes"


@dataclass(frozen=True)
class VectorNote:
    id: str
    title: str
    body: str
    tag: str
    embedding: list[float]


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    tag: str
    distance: float


async def write_note(
    provider: str, url: str, tenant_id: str, note: VectorNote, settings: Settings
) -> None:
    if provider == "lancedb":
        await _lance_write(url, note)
    else:
        await _pg_write(url, tenant_id, note, settings)


async def search_notes(
    provider: str,
    url: str,
    tenant_id: str,
    vector: list[float],
    limit: int,
    settings: Settings,
) -> list[Hit]:
    """The ``limit`` notes nearest ``vector`` by cosine distance, nearest first."""
    if provider == "lancedb":
        return await _lance_search(url, vector, limit)
    return await _pg_search(url, tenant_id, vector, limit, settings)


async def _lance_write(url: str, note: VectorNote) -> None:
    table = await (await lancedb.connect_async(url)).open_table(COLLECTION)
    await table.add([asdict(note)])


async def _lance_search(url: str, vector: list[float], limit: int) -> list[Hit]:
    table = await (await lancedb.connect_async(url)).open_table(COLLECTION)
    query = table.vector_search(vector).distance_type("cosine").limit(limit)
    rows = await query.select(["id", "title", "tag", "_distance"]).to_list()
    return [Hit(r["id"], r["title"], r["tag"], float(r["_distance"])) for r in rows]


async def _pg_write(url: str, tenant_id: str, note: VectorNote, settings: Settings) -> None:
    async with _pg(url, tenant_id, settings) as (conn, qualified):
        await conn.execute(
            f"INSERT INTO {qualified} (id, title, body, tag, embedding) "
            "VALUES ($1, $2, $3, $4, $5::text::vector)",
            note.id,
            note.title,
            note.body,
            note.tag,
            _pg_vector(note.embedding),
        )


async def _pg_search(
    url: str, tenant_id: str, vector: list[float], limit: int, settings: Settings
) -> list[Hit]:
    async with _pg(url, tenant_id, settings) as (conn, qualified):
        rows = await conn.fetch(
            f"SELECT id, title, tag, embedding <=> $1::text::vector AS distance FROM {qualified} "
            "ORDER BY distance LIMIT $2",
            _pg_vector(vector),
            limit,
        )
    return [Hit(r["id"], r["title"], r["tag"], float(r["distance"])) for r in rows]


@asynccontextmanager
async def _pg(
    url: str, tenant_id: str, settings: Settings
) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    # The migrator's reading of the URL (a unix socket directory in ?host= included), so the
    # application connects where the migrator migrated.
    address = parse_url(url)
    conn: asyncpg.Connection = await asyncpg.connect(
        host=address.host,
        port=address.port,
        database=address.database,
        user=settings.vector_db_username,
        password=settings.vector_db_password.get_secret_value() or None,
    )
    try:
        # The schema rule is the migrator's: its adapter created the collection there.
        qualified = f"{quote_ident(schema_for(tenant_id, {}))}.{quote_ident(COLLECTION)}"
        yield conn, qualified
    finally:
        await conn.close()


def _pg_vector(vector: list[float]) -> str:
    # pgvector's text form; the cast in SQL keeps asyncpg from needing a codec for the type.
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"
