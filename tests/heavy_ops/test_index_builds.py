"""Index builds that are killed, time out, or meet another server process's build leave
nothing half-built behind, and the next run finishes the job. Real HNSW builds on the
embedded PostgreSQL 18 with pgvector, sized to take a few seconds; nothing sleeps instead."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.runs.dataset import migrate_target
from migrator.settings import Settings
from migrator.states import DatasetStatus
from migrator.vector.base import DatasetTarget, StepFailed
from migrator.vector.revisions.errors import IndexBuildInProgressError, RevisionApplyError
from tests.heavy_ops.support import (
    INDEX,
    build_rows,
    dataset,
    fill,
    hnsw,
    index_folder,
    indexes,
    migrate,
    wait_until,
)
from tests.support.environment import PROJECT_ROOT
from tests.vector.helpers import pg_raw, version_of

UrlFactory = Callable[[], str]
ROWS = 3000


async def _ready(url: str, settings: Settings, rows: int = ROWS) -> tuple[DatasetTarget, str]:
    """The dataset at 0001 with ``rows`` vectors: the index build of 0002 has work to do."""
    t, schema = dataset(url)
    await migrate(t, settings, "0001_items")
    await fill(url, schema, rows)
    return t, schema


async def _building(url: str) -> bool:
    return any(r["tuples_done"] or r["blocks_done"] for r in await build_rows(url, INDEX))


async def _no_build(url: str) -> bool:
    return not await build_rows(url, INDEX)


def test_sigkill_during_a_concurrent_build_then_a_clean_next_run(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw(concurrently=True))
    # The killed run builds slowly (1MB: pgvector builds on disk); the next one with its default.
    settings = make_settings(VECTOR_MIGRATIONS=folder, INDEX_MAINTENANCE_WORK_MEM="1MB")
    url = pgvector_db()
    t, schema = asyncio.run(_ready(url, settings))

    child = subprocess.Popen(
        [sys.executable, "-m", "tests.heavy_ops.build_child", url, t.dataset_id],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        asyncio.run(wait_until(lambda: _building(url), 30, "the child's build under way"))
    finally:
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, out + err
    # The work session checks for its client (client_connection_check_interval): the orphaned
    # build ends on the server within seconds, leaving its INVALID index behind.
    asyncio.run(wait_until(lambda: _no_build(url), 20, "the orphaned build to end"))
    assert asyncio.run(indexes(url, schema))[INDEX][0] is False

    settings = make_settings(VECTOR_MIGRATIONS=folder, INDEX_MAINTENANCE_WORK_MEM="")
    steps = asyncio.run(migrate(t, settings))
    assert steps.applied == ("0002_index",)
    found = asyncio.run(indexes(url, schema))
    assert found[INDEX][0] is True
    assert all(valid for valid, _ in found.values()), found
    assert asyncio.run(version_of(t, settings)) == "0002_index"


def test_a_concurrent_build_timed_out_is_dropped_and_rebuilt_by_the_next_run(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw(concurrently=True))
    slow = make_settings(
        VECTOR_MIGRATIONS=folder, INDEX_MAINTENANCE_WORK_MEM="1MB", DATASET_TIMEOUT_S="1.5"
    )
    url = pgvector_db()
    t, schema = asyncio.run(_ready(url, slow))

    outcome = asyncio.run(migrate_target(t, slow))
    assert outcome.status == DatasetStatus.TIMED_OUT, outcome
    asyncio.run(wait_until(lambda: _no_build(url), 20, "the cancelled build to end"))
    leftover = asyncio.run(indexes(url, schema))[INDEX]
    assert leftover[0] is False

    settings = make_settings(INDEX_MAINTENANCE_WORK_MEM="", DATASET_TIMEOUT_S="300")
    assert asyncio.run(migrate(t, settings)).applied == ("0002_index",)
    rebuilt = asyncio.run(indexes(url, schema))[INDEX]
    assert rebuilt[0] is True and rebuilt[1] != leftover[1]  # dropped, then built anew


def test_a_plain_build_timed_out_leaves_nothing(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw())
    slow = make_settings(
        VECTOR_MIGRATIONS=folder, INDEX_MAINTENANCE_WORK_MEM="1MB", DATASET_TIMEOUT_S="1.5"
    )
    url = pgvector_db()
    t, schema = asyncio.run(_ready(url, slow))

    outcome = asyncio.run(migrate_target(t, slow))
    assert outcome.status == DatasetStatus.TIMED_OUT, outcome
    asyncio.run(wait_until(lambda: _no_build(url), 20, "the cancelled build to end"))
    # The build ran inside the revision's transaction: rolled back, no index, no record.
    assert INDEX not in asyncio.run(indexes(url, schema))
    assert asyncio.run(version_of(t, slow)) == "0001_items"


def test_a_live_build_by_another_server_process_is_waited_for_not_dropped(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw(concurrently=True))
    settings = make_settings(VECTOR_MIGRATIONS=folder, INDEX_BUILD_WAIT_S="0.3")
    url = pgvector_db()
    t, schema = asyncio.run(_ready(url, settings))

    async def scenario() -> tuple[IndexBuildInProgressError, int]:
        async with pg_raw(url) as other:
            pid = other.get_server_pid()
            await other.execute("SET maintenance_work_mem = '1MB'")
            sql = (
                f'CREATE INDEX CONCURRENTLY "{INDEX}" ON "{schema}".items '
                "USING hnsw (embedding vector_l2_ops)"
            )
            build = asyncio.create_task(other.execute(sql))
            await wait_until(lambda: _building(url), 30, "the other build under way")
            with pytest.raises(StepFailed) as failed:
                await migrate(t, settings)
            await build
        applying = failed.value.cause
        assert isinstance(applying, RevisionApplyError) and applying.revision == "0002_index"
        assert isinstance(applying.cause, IndexBuildInProgressError)
        return applying.cause, pid

    error, pid = asyncio.run(scenario())
    assert error.pid == pid and error.index == INDEX
    assert f"server process {pid}" in str(error) and INDEX in str(error)
    built = asyncio.run(indexes(url, schema))[INDEX]
    assert built[0] is True  # the other process's build finished: nothing dropped it

    # Once it is done, the revision finds the index there and records itself.
    assert asyncio.run(migrate(t, settings)).applied == ("0002_index",)
    assert asyncio.run(indexes(url, schema))[INDEX] == built


def test_a_waiting_build_reports_the_other_process_and_finishes_after_it(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw(concurrently=True))
    settings = make_settings(VECTOR_MIGRATIONS=folder, PROGRESS_INTERVAL_S="0.2")
    url = pgvector_db()
    t, schema = asyncio.run(_ready(url, settings, rows=1500))
    heard: list[str] = []

    async def scenario() -> int:
        async with pg_raw(url) as other:
            await other.execute("SET maintenance_work_mem = '1MB'")
            sql = (
                f'CREATE INDEX CONCURRENTLY "{INDEX}" ON "{schema}".items '
                "USING hnsw (embedding vector_l2_ops)"
            )
            build = asyncio.create_task(other.execute(sql))
            await wait_until(lambda: _building(url), 30, "the other build under way")
            oid = (await indexes(url, schema))[INDEX][1]
            steps = await migrate(t, settings, on_progress=lambda p: heard.append(p.operation))
            await build
            assert steps.applied == ("0002_index",)
            return oid

    oid = asyncio.run(scenario())
    assert asyncio.run(indexes(url, schema))[INDEX] == (True, oid)
    assert any("server process" in operation for operation in heard), heard


def test_resources_reach_the_build(
    make_settings: Callable[..., Settings],
    pgvector_db: UrlFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pgvector says when the graph outgrows maintenance_work_mem: it does at 1MB (the op's
    own setting, over INDEX_MAINTENANCE_WORK_MEM), not at 256MB (the setting)."""
    caplog.set_level(logging.INFO, "migrator.vector.revisions.pg_exec")
    for memory, hint in (("1MB", True), (None, False)):
        folder = index_folder(
            tmp_path / f"revs-{memory}",
            hnsw(maintenance_work_mem=memory, parallel_workers=0) if memory else hnsw(),
        )
        settings = make_settings(VECTOR_MIGRATIONS=folder, INDEX_MAINTENANCE_WORK_MEM="256MB")
        url = pgvector_db()
        t, _ = asyncio.run(_ready(url, settings, rows=1500))
        caplog.clear()
        asyncio.run(migrate(t, settings))
        said = [
            r for r in caplog.records if "no longer fits into maintenance_work_mem" in r.message
        ]
        assert bool(said) is hint, caplog.text
        if hint:
            assert said[0].levelno == logging.WARNING
            assert "maintenance_work_mem=1MB, max_parallel_maintenance_workers=0" in said[0].message
