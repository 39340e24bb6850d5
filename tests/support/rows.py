"""Reading (and, for set-up, writing) control-plane rows directly, as tests check them.

Writes here bypass the migrator on purpose: a row as a hand edit, an old release or an
uninstalled plugin may have left it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import utcnow
from migrator.models import dataset_databases, datasets, migration_run_datasets, migration_runs
from migrator.settings import Settings
from tests.support.environment import on_control_plane


def runs(settings: Settings) -> list[dict[str, Any]]:
    """Every ``migration_runs`` row, oldest first."""

    async def read(engine: AsyncEngine) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            found = await conn.execute(
                sa.select(migration_runs).order_by(migration_runs.c.started_at)
            )
            return [dict(r._mapping) for r in found]

    return on_control_plane(settings, read)


def all_run_rows(settings: Settings, run_id: str | None = None) -> list[dict[str, Any]]:
    """``migration_run_datasets`` rows, of one run or of every run."""
    query = sa.select(migration_run_datasets)
    if run_id is not None:
        query = query.where(migration_run_datasets.c.run_id == run_id)

    async def read(engine: AsyncEngine) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    return on_control_plane(settings, read)


def run_rows(settings: Settings, run_id: str) -> dict[str, dict[str, Any]]:
    """``migration_run_datasets`` of one run, by dataset id."""
    return {row["dataset_id"]: row for row in all_run_rows(settings, run_id)}


async def read_cached_versions(engine: AsyncEngine) -> dict[str, str | None]:
    """The vector revision the control plane caches, by dataset id."""
    async with engine.connect() as conn:
        found = await conn.execute(
            sa.select(dataset_databases.c.dataset_id, dataset_databases.c.vector_schema_version)
        )
        return {d: v for d, v in found}


def cached_versions(settings: Settings) -> dict[str, str | None]:
    """``read_cached_versions`` from synchronous test code."""
    return on_control_plane(settings, read_cached_versions)


async def cached_row(engine: AsyncEngine, dataset_id: str) -> Mapping[str, Any]:
    """The dataset's ``dataset_databases`` row."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(dataset_databases).where(dataset_databases.c.dataset_id == dataset_id)
            )
        ).one()
    return row._mapping


async def set_cached(engine: AsyncEngine, dataset_id: str, version: str | None) -> None:
    """Make the control plane cache ``version`` for the dataset."""
    async with engine.begin() as conn:
        await conn.execute(
            dataset_databases.update()
            .where(dataset_databases.c.dataset_id == dataset_id)
            .values(vector_schema_version=version)
        )


def set_cached_version(settings: Settings, dataset_id: str, version: str | None) -> None:
    """``set_cached`` from synchronous test code."""
    on_control_plane(settings, lambda engine: set_cached(engine, dataset_id, version))


@dataclass(frozen=True)
class RawDataset:
    """A registry row written as is: no name check, no URL normalisation unless given."""

    name: str
    provider: str
    url: str
    id: str = ""
    server_key: str = ""
    owner: str = "t"

    def with_id(self) -> RawDataset:
        return self if self.id else RawDataset(**{**self.__dict__, "id": str(uuid.uuid4())})


async def insert_raw(engine: AsyncEngine, rows: Iterable[RawDataset]) -> list[str]:
    """Insert registry rows in one transaction, bypassing ``add_dataset``; returns their ids."""
    made = [row.with_id() for row in rows]
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            datasets.insert(),
            [{"id": r.id, "name": r.name, "owner": r.owner, "created_at": now} for r in made],
        )
        await conn.execute(
            dataset_databases.insert(),
            [
                {
                    "dataset_id": r.id,
                    "name": r.name,
                    "created_at": now,
                    "vector_provider": r.provider,
                    "url": r.url,
                    "connection_info": {},
                    "server_key": r.server_key,
                }
                for r in made
            ],
        )
    return [r.id for r in made]


def version_rows(settings: Settings, table: str) -> list[str] | None:
    """The rows of Alembic version table ``table``, sorted; None when it does not exist."""

    async def read(engine: AsyncEngine) -> list[str] | None:
        async with engine.connect() as conn:
            exists = await conn.run_sync(lambda c: sa.inspect(c).has_table(table))
            if not exists:
                return None
            found = await conn.scalars(
                sa.select(sa.column("version_num")).select_from(sa.table(table))
            )
            return sorted(str(v) for v in found)

    return on_control_plane(settings, read)
