"""Control-plane revision 0006: the per-dataset state no longer depends on the registry's list.
A control plane with data in it goes up and back down with nothing lost; a downgrade that
would lose an external source's datasets is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from migrator.db import control_plane
from migrator.relational import alembic_config
from migrator.settings import Settings
from tests.support.revisions import PACKAGED

RUN_ID = "00000000-0000-4000-8000-000000000006"
IDS = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]


async def _seed(settings: Settings) -> None:
    async with control_plane(settings) as engine, engine.begin() as conn:
        for n, dataset_id in enumerate(IDS):
            await conn.execute(
                sa.text(
                    "INSERT INTO datasets (id, name, owner, created_at) "
                    "VALUES (:id, :name, 'o', :at)"
                ),
                {"id": dataset_id, "name": f"name {n}", "at": datetime(2026, 1, n + 1, tzinfo=UTC)},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO dataset_databases (dataset_id, vector_provider, url, "
                    "connection_info, vector_schema_version, state, last_error, "
                    "migration_failures, server_key) VALUES (:id, 'lancedb', :url, "
                    "'{\"k\": 1}', :v, :state, :err, :fails, 'local')"
                ),
                {
                    "id": dataset_id,
                    "url": f"/lance/{dataset_id}",
                    "v": PACKAGED[n],
                    "state": ["active", "quarantined"][n],
                    "err": [None, "boom"][n],
                    "fails": n * 3,
                },
            )
        await conn.execute(
            sa.text(
                "INSERT INTO migration_runs (id, trigger, status, started_at) "
                "VALUES (:id, 'admin', 'partial', CURRENT_TIMESTAMP)"
            ),
            {"id": RUN_ID},
        )
        for dataset_id in IDS:
            await conn.execute(
                sa.text(
                    "INSERT INTO migration_run_datasets (run_id, dataset_id, status, "
                    "version_before, version_after) VALUES (:run, :id, 'succeeded', NULL, :v)"
                ),
                {"run": RUN_ID, "id": dataset_id, "v": PACKAGED[0]},
            )


STATE_COLUMNS = (
    "dataset_id, vector_provider, url, connection_info, vector_schema_version, state, "
    "last_error, migration_failures, server_key"
)


async def _read(settings: Settings, extra: str = "") -> dict[str, list[tuple[Any, ...]]]:
    async with control_plane(settings) as engine, engine.connect() as conn:

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(str(v) for v in r) for r in await conn.execute(sa.text(sql))]

        return {
            "state": await rows(f"SELECT {STATE_COLUMNS}{extra} FROM dataset_databases ORDER BY 1"),
            "datasets": await rows("SELECT id, name, owner, created_at FROM datasets ORDER BY 1"),
            "runs": await rows(
                "SELECT run_id, dataset_id, status, version_before, version_after "
                "FROM migration_run_datasets ORDER BY 2"
            ),
        }


async def _foreign_keys(settings: Settings) -> list[Any]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: sa.inspect(sync).get_foreign_keys("dataset_databases")
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_state_is_carried_up_and_back_with_nothing_lost(
    backend: str, make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    settings = (
        make_settings(database_url=pg_database()) if backend == "postgres" else make_settings()
    )
    config = alembic_config(settings)
    command.upgrade(config, "0005")
    asyncio.run(_seed(settings))
    before = asyncio.run(_read(settings))
    assert len(asyncio.run(_foreign_keys(settings))) == 1

    command.upgrade(config, "0006")

    after = asyncio.run(_read(settings, ", name, created_at, removed_at"))
    assert [r[:-3] for r in after["state"]] == before["state"]
    # Each dataset's name and creation time are copied from the registry; none is removed.
    assert [r[-3:] for r in after["state"]] == [
        (name, created_at, "None") for _, name, _, created_at in before["datasets"]
    ]
    assert after["datasets"] == before["datasets"] and after["runs"] == before["runs"]
    assert asyncio.run(_foreign_keys(settings)) == []

    command.downgrade(config, "0005")

    assert asyncio.run(_read(settings)) == before
    assert len(asyncio.run(_foreign_keys(settings))) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_downgrade_refuses_to_lose_an_external_sources_datasets(
    backend: str, make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    settings = (
        make_settings(database_url=pg_database()) if backend == "postgres" else make_settings()
    )
    config = alembic_config(settings)
    command.upgrade(config, "0006")

    async def external_dataset() -> None:
        async with control_plane(settings) as engine, engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO dataset_databases (dataset_id, name, created_at, "
                    "vector_provider, url, connection_info) VALUES ('tenant:42', 't', "
                    "CURRENT_TIMESTAMP, 'lancedb', '/lance/t', '{}')"
                )
            )

    asyncio.run(external_dataset())
    with pytest.raises(RuntimeError, match=r"state of 1 dataset\(s\) the registry does not list"):
        command.downgrade(config, "0005")
    assert asyncio.run(_read(settings))["state"][0][0] == "tenant:42"  # nothing was changed
