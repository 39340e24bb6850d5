"""In-process: a real HNSW build that outlasts DATASET_TIMEOUT_S finishes under the budget its
revision declares (and is cut off without the declaration); the per-server heavy cap, sampled
from the server itself; a live heavy operation is never taken for a stale run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.locks.redis import Locks
from migrator.relational import upgrade_to_head
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.store import running_runs
from migrator.runs.trigger import recover_stale_runs
from migrator.settings import Settings
from migrator.states import DatasetStatus, RunStatus
from tests.heavy.support import (
    DIMENSION,
    FIRST_REVISION,
    HEAVY_REVISION,
    ROWS,
    BuildSamples,
    fill_rows,
    index_exists,
    sample_builds,
    slow_index_folder,
    wait_for_build,
)
from tests.support.services import REDIS_BASE_URL, REDIS_DB

pytestmark = pytest.mark.slow
MakeSettings = Callable[..., Settings]


def _datasets_with_rows(
    make_settings: MakeSettings, urls: list[str], folder: Path, rows: int = ROWS
) -> list[str]:
    """Datasets at the folder's first revision (``items``, no index), filled with rows."""
    settings = make_settings(VECTOR_DIMENSION=DIMENSION, VECTOR_MIGRATIONS=folder)

    async def setup() -> list[str]:
        await upgrade_to_head(settings)
        async with control_plane(settings) as engine:
            ids = [await _add(engine, settings, url) for url in urls]
        summary = await run_startup_migrations(settings=settings, to_revision=FIRST_REVISION)
        assert summary.status == RunStatus.SUCCEEDED, summary
        for dataset_id, url in zip(ids, urls, strict=True):
            await fill_rows(url, dataset_id, rows)
        return ids

    return asyncio.run(setup())


async def _add(engine: AsyncEngine, settings: Settings, url: str) -> str:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    row = await add_dataset(engine, settings, name=name, provider="pgvector", url=url)
    return row.id


def test_a_build_that_outlasts_the_dataset_limit_finishes_under_its_declared_budget(
    make_settings: MakeSettings,
    pgvector_url: Callable[[], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = pgvector_url()
    [dataset_id] = _datasets_with_rows(
        make_settings, [url], slow_index_folder(tmp_path, heavy=False)
    )

    light = make_settings(
        VECTOR_DIMENSION=DIMENSION,
        VECTOR_MIGRATIONS=slow_index_folder(tmp_path, heavy=False),
        DATASET_TIMEOUT_S=0.5,
    )
    cut = asyncio.run(run_startup_migrations(settings=light))
    [outcome] = cut.datasets
    assert outcome.status in (DatasetStatus.TIMED_OUT, DatasetStatus.FAILED), outcome
    assert "Timeout" in (outcome.error or ""), outcome
    assert outcome.version_after in (None, FIRST_REVISION), outcome
    assert not asyncio.run(index_exists(url, dataset_id))  # its transaction rolled back

    heavy = make_settings(
        VECTOR_DIMENSION=DIMENSION,
        VECTOR_MIGRATIONS=slow_index_folder(tmp_path, heavy=True, budget_s=120),
        DATASET_TIMEOUT_S=0.5,
    )
    with caplog.at_level(logging.INFO, logger="migrator"):
        done = asyncio.run(run_startup_migrations(settings=heavy))
    [outcome] = done.datasets
    assert outcome.status == DatasetStatus.SUCCEEDED, outcome
    assert outcome.version_after == HEAVY_REVISION
    assert outcome.duration_ms > 500  # it did outlast DATASET_TIMEOUT_S
    assert asyncio.run(index_exists(url, dataset_id))
    assert f"dataset={dataset_id}" in caplog.text
    assert "is heavy: budget 120s instead of DATASET_TIMEOUT_S=0.5s" in caplog.text


@pytest.mark.parametrize("cap", [1, 2])
def test_heavy_builds_on_one_server_never_exceed_the_heavy_cap(
    make_settings: MakeSettings,
    pgvector_url: Callable[[], str],
    pg_socket_dir: str,
    tmp_path: Path,
    cap: int,
) -> None:
    """Sampled from pg_stat_progress_create_index: with cap 2 both builds overlap (so the
    sampling sees overlaps), with cap 1 never, although PER_SERVER_CONCURRENCY allows 8."""
    urls = [pgvector_url(), pgvector_url()]
    _datasets_with_rows(make_settings, urls, slow_index_folder(tmp_path, heavy=False))
    settings = make_settings(
        VECTOR_DIMENSION=DIMENSION,
        VECTOR_MIGRATIONS=slow_index_folder(tmp_path, heavy=True, budget_s=120),
        HEAVY_PER_SERVER_CONCURRENCY=cap,
    )

    async def run() -> tuple[RunStatus, BuildSamples]:
        samples, stop = BuildSamples(), asyncio.Event()
        sampler = asyncio.create_task(sample_builds(pg_socket_dir, stop.is_set, samples))
        try:
            summary = await run_startup_migrations(settings=settings)
        finally:
            stop.set()
            await sampler
        return summary.status, samples

    status, samples = asyncio.run(run())
    assert status == RunStatus.SUCCEEDED
    assert samples.looks_with_a_build > 0
    assert samples.most_at_once == cap, samples.counts


@pytest.mark.parametrize("heavy", [True, False])
def test_the_stale_check_leaves_a_live_heavy_build_alone(
    make_settings: MakeSettings,
    pgvector_url: Callable[[], str],
    pg_socket_dir: str,
    tmp_path: Path,
    heavy: bool,
) -> None:
    """RUN_STALE_AFTER_S shorter than the build: the check runs while the build is live. A
    heavy dataset keeps its run moving; the same build undeclared (and reporting no progress)
    leaves it idle, and stale.
    (Twice the rows: the build must outlast the stale age on an idle machine too.)"""
    folder = slow_index_folder(tmp_path, heavy=False)
    _datasets_with_rows(make_settings, [pgvector_url()], folder, rows=2 * ROWS)
    settings = make_settings(
        VECTOR_DIMENSION=DIMENSION,
        VECTOR_MIGRATIONS=slow_index_folder(tmp_path, heavy=heavy, budget_s=120),
        DATASET_TIMEOUT_S=120,
        RUN_STALE_AFTER_S=2,
        # Progress writes move the run too; none here, so only the heavy keep-alive can.
        PROGRESS_INTERVAL_S=300,
        REDIS_URL=f"{REDIS_BASE_URL}/{REDIS_DB}",
    )

    async def run() -> list[str]:
        locks = Locks.from_settings(settings)
        migrating = asyncio.create_task(run_startup_migrations(settings=settings))
        await wait_for_build(pg_socket_dir)
        stale: list[str] = []
        async with control_plane(settings) as engine:
            # Through the whole build, past the stale age: the check as beat would run it.
            while not migrating.done() and await running_runs(engine):
                stale += await recover_stale_runs(engine, settings, locks)
                await asyncio.sleep(0.5)
        if stale:  # the run was failed under its live build: no need to wait for the rest
            migrating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await migrating
        locks.client.close()
        return stale

    stale = asyncio.run(run())
    assert (stale == []) is heavy, stale
