"""Control-plane revision 0005: integer vector versions become revision ids, nothing lost, and
back again on downgrade (refused when an id has no integer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from migrator.db import control_plane
from migrator.relational import alembic_config
from migrator.settings import Settings
from tests.support.revisions import PACKAGED

CARRIED = {0: None, 1: PACKAGED[0], 2: PACKAGED[1], 3: PACKAGED[2]}
RUN_ID = "00000000-0000-4000-8000-000000000001"


async def _seed(settings: Settings) -> None:
    async with control_plane(settings) as engine, engine.begin() as conn:
        for version in CARRIED:
            dataset_id = f"ds-{version}"
            await conn.execute(
                sa.text(
                    "INSERT INTO datasets (id, name, owner, created_at) "
                    "VALUES (:id, :name, 'o', CURRENT_TIMESTAMP)"
                ),
                {"id": dataset_id, "name": f"name-{dataset_id}"},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO dataset_databases (dataset_id, vector_provider, url, "
                    "connection_info, vector_schema_version) VALUES (:id, 'lancedb', :url, "
                    "'{}', :v)"
                ),
                {"id": dataset_id, "url": f"/lance/{dataset_id}", "v": version},
            )
        await conn.execute(
            sa.text(
                "INSERT INTO migration_runs (id, trigger, status, started_at) "
                "VALUES (:id, 'admin', 'succeeded', CURRENT_TIMESTAMP)"
            ),
            {"id": RUN_ID},
        )
        for version in CARRIED:
            await conn.execute(
                sa.text(
                    "INSERT INTO migration_run_datasets (run_id, dataset_id, status, "
                    "version_before, version_after) VALUES (:run, :id, 'succeeded', :v, :v)"
                ),
                {"run": RUN_ID, "id": f"ds-{version}", "v": version},
            )


async def _read(settings: Settings) -> list[tuple[Any, ...]]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT d.dataset_id, d.vector_schema_version, r.version_before, r.version_after "
                "FROM dataset_databases d JOIN migration_run_datasets r "
                "ON r.dataset_id = d.dataset_id ORDER BY d.dataset_id"
            )
        )
        return [tuple(r) for r in rows]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_integer_versions_are_carried_to_revision_ids_and_back(
    backend: str, make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    settings = (
        make_settings(database_url=pg_database()) if backend == "postgres" else make_settings()
    )
    config = alembic_config(settings)
    command.upgrade(config, "0004")
    asyncio.run(_seed(settings))

    command.upgrade(config, "0005")
    assert asyncio.run(_read(settings)) == [
        (f"ds-{n}", rev, rev, rev) for n, rev in CARRIED.items()
    ]

    command.downgrade(config, "0004")
    assert asyncio.run(_read(settings)) == [
        (f"ds-{n}", n, None if n == 0 else n, None if n == 0 else n) for n in CARRIED
    ]


def test_a_downgrade_refuses_revision_ids_without_an_integer(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    config = alembic_config(settings)
    command.upgrade(config, "0005")

    async def app_revision() -> None:
        async with control_plane(settings) as engine, engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO datasets (id, name, owner, created_at) "
                    "VALUES ('x', 'x', 'o', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO dataset_databases (dataset_id, vector_provider, url, "
                    "connection_info, vector_schema_version) "
                    "VALUES ('x', 'lancedb', 'x', '{}', '0004_app')"
                )
            )

    asyncio.run(app_revision())
    with pytest.raises(RuntimeError, match=r"dataset_databases\.vector_schema_version"):
        command.downgrade(config, "0004")
