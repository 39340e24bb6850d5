"""Make benchmark worlds fast: a fresh control-plane database and N datasets inserted in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.models import dataset_databases, datasets

BATCH_ROWS = 2000


async def recreate_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def provision(
    engine: AsyncEngine,
    count: int,
    provider: str,
    url_for: Callable[[str], str],
    server_key: str,
    version: str | None = None,
) -> list[str]:
    """Insert ``count`` datasets at ``version``, all on one server; returns their ids."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with engine.begin() as conn:
        for start in range(0, count, BATCH_ROWS):
            chunk = ids[start : start + BATCH_ROWS]
            await conn.execute(
                datasets.insert(),
                [
                    {"id": d, "name": f"bench-{start + i}", "owner": "bench", "created_at": now}
                    for i, d in enumerate(chunk)
                ],
            )
            await conn.execute(
                dataset_databases.insert(),
                [
                    {
                        "dataset_id": d,
                        "name": f"bench-{start + i}",
                        "created_at": now,
                        "vector_provider": provider,
                        "url": url_for(d),
                        "connection_info": {},
                        "vector_schema_version": version,
                        "state": "active",
                        "server_key": server_key,
                    }
                    for i, d in enumerate(chunk)
                ],
            )
    return ids


async def reset_versions(engine: AsyncEngine, version: str | None = None) -> None:
    """Put every dataset's cached version back, so the next mode finds the same work."""
    async with engine.begin() as conn:
        await conn.execute(
            dataset_databases.update().values(vector_schema_version=version, last_error=None)
        )


async def drop_dataset_schemas(vector_dsn: str) -> int:
    """Drop every per-dataset schema (``ds_*``) so the real workload starts from nothing."""
    conn = await asyncpg.connect(vector_dsn)
    try:
        names = [
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ds\\_%'"
            )
        ]
        for name in names:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        return len(names)
    finally:
        await conn.close()


async def count_at_head(engine: AsyncEngine, head: str | None) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.select(sa.func.count())
                .select_from(dataset_databases)
                .where(dataset_databases.c.vector_schema_version == head)
            )
            or 0
        )
