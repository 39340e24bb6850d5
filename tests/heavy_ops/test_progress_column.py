"""Control-plane revision 0007: ``migration_run_datasets.progress`` goes up and back down on
SQLite and PostgreSQL with every run row as it was; the run store writes it only to a running
row, and reads it back with the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from migrator.db import control_plane
from migrator.relational import alembic_config
from migrator.runs import store
from migrator.runs.summary import DatasetOutcome
from migrator.settings import Settings
from migrator.states import DatasetStatus

RUN_ID = "00000000-0000-4000-8000-000000000007"
IDS = ["d-running", "d-done"]
PROGRESS = {"operation": "backfill t.c", "phase": None, "done": 5, "total": 10, "unit": "rows"}


async def _seed(settings: Settings) -> None:
    async with control_plane(settings) as engine, engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO migration_runs (id, trigger, status, started_at) "
                "VALUES (:id, 'admin', 'running', CURRENT_TIMESTAMP)"
            ),
            {"id": RUN_ID},
        )
        for dataset_id, status in zip(IDS, ["running", "succeeded"], strict=True):
            await conn.execute(
                sa.text(
                    "INSERT INTO migration_run_datasets (run_id, dataset_id, status, attempts) "
                    "VALUES (:run, :id, :status, 1)"
                ),
                {"run": RUN_ID, "id": dataset_id, "status": status},
            )


async def _rows(settings: Settings) -> list[tuple[Any, ...]]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT run_id, dataset_id, status, attempts FROM migration_run_datasets "
                "ORDER BY dataset_id"
            )
        )
        return [tuple(r) for r in found]


async def _columns(settings: Settings) -> list[str]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: [c["name"] for c in sa.inspect(sync).get_columns("migration_run_datasets")]
        )


async def _write_and_read(settings: Settings) -> tuple[bool, bool, list[DatasetOutcome]]:
    async with control_plane(settings) as engine:
        running = await store.write_progress(engine, RUN_ID, IDS[0], PROGRESS)
        finished = await store.write_progress(engine, RUN_ID, IDS[1], PROGRESS)
        # What `enqueue --wait` polls: the running dataset's operation with the counts.
        progress = await store.read_progress(engine, RUN_ID)
        assert progress is not None and progress.done == 1
        (operation,) = progress.operations
        assert operation.dataset_id == IDS[0] and operation.progress["done"] == 5
        return running, finished, (await store.get_run(engine, RUN_ID)).datasets


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_progress_column_up_written_read_and_back_down(
    backend: str, make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    settings = (
        make_settings(database_url=pg_database()) if backend == "postgres" else make_settings()
    )
    config = alembic_config(settings)
    command.upgrade(config, "0006")
    asyncio.run(_seed(settings))
    before = asyncio.run(_rows(settings))
    assert "progress" not in asyncio.run(_columns(settings))

    command.upgrade(config, "0007")

    assert asyncio.run(_rows(settings)) == before
    running, finished, outcomes = asyncio.run(_write_and_read(settings))
    assert (running, finished) == (True, False)  # a finished row never takes a late sample
    by_id = {o.dataset_id: o for o in outcomes}
    recorded = by_id[IDS[0]].progress
    assert recorded is not None and recorded.pop("updated_at")
    assert recorded == PROGRESS
    assert by_id[IDS[1]].progress is None
    assert by_id[IDS[0]].status == DatasetStatus.RUNNING

    command.downgrade(config, "0006")

    assert "progress" not in asyncio.run(_columns(settings))
    assert asyncio.run(_rows(settings)) == before
