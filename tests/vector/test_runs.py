"""Whole runs through ``run_startup_migrations``: a real SQLite control plane, real LanceDB
directories, the embedded pgvector server, the system PostgreSQL without pgvector, and a port
nothing listens on."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lancedb
import pyarrow as pa
import pytest
import sqlalchemy as sa

from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.models import dataset_databases, migration_run_datasets
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.summary import RunSummary
from migrator.settings import Settings
from migrator.vector.base import RevisionGoal
from tests.vector.helpers import (
    HEAD,
    PACKAGED,
    cached,
    insert_raw_dataset,
    opened,
    target,
    version_of,
)

UrlFactory = Callable[[], str]


async def _add(settings: Settings, name: str, provider: str, url: str | None = None) -> str:
    async with control_plane(settings) as engine:
        return (await add_dataset(engine, settings, name=name, provider=provider, url=url)).id


async def _run_errors(settings: Settings, run_id: str) -> dict[str, str | None]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        rows = await conn.execute(
            sa.select(migration_run_datasets.c.dataset_id, migration_run_datasets.c.error).where(
                migration_run_datasets.c.run_id == run_id
            )
        )
        return {dataset_id: error for dataset_id, error in rows}


async def _chunks_without_id(url: str) -> None:
    """A collection someone made by hand with no ``id`` column: step 3 cannot index it."""
    db = await lancedb.connect_async(url)
    try:
        schema = pa.schema([pa.field("payload", pa.string())])
        await db.create_table("chunks", schema=schema)
    finally:
        db.close()


def test_one_broken_dataset_never_stops_the_others(
    control: Settings,
    pgvector_db: UrlFactory,
    pg_database: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    system_pg = urlsplit(pg_database())  # PostgreSQL 15 without pgvector
    embedded_url = pgvector_db()

    async def provision() -> tuple[list[str], dict[str, tuple[str, str]], str]:
        good = [await _add(control, f"lance-{i}", "lancedb") for i in range(3)]
        good.append(await _add(control, "pg-ok", "pgvector", embedded_url))
        no_index = await _add(control, "hand-made", "lancedb")
        async with control_plane(control) as engine, engine.connect() as conn:
            url = await conn.scalar(
                sa.select(dataset_databases.c.url).where(dataset_databases.c.dataset_id == no_index)
            )
        await _chunks_without_id(url)
        broken = {
            await _add(control, "pg-down", "pgvector", "postgresql://127.0.0.1:1/postgres"): (
                "connect",
                "VectorDatabaseUnreachableError: cannot connect to pgvector server 127.0.0.1:1 "
                "database 'postgres' as 'postgres': ConnectionRefusedError: [Errno 111] Connect "
                "call failed ('127.0.0.1', 1)",
            ),
            await _add(
                control,
                "pg-15",
                "pgvector",
                f"postgresql://{system_pg.hostname}:{system_pg.port}{system_pg.path}",
            ): (
                "upgrade",  # the extension is created before the first revision runs
                "VectorExtensionUnavailableError: PostgreSQL server 127.0.0.1:5432 (database "
                f"{system_pg.path[1:]!r}) cannot provide the 'vector' extension",
            ),
            await insert_raw_dataset(control, "gone-plugin", "weaviate", "http://w:8080"): (
                "open",
                "UnknownProviderError: unknown vector provider 'weaviate'; registered: "
                "lancedb, pgvector",
            ),
            await insert_raw_dataset(control, "s3", "lancedb", "s3://key:hunter2@bucket/x"): (
                "open",
                "BadDatasetURLError: lancedb URL s3://... carries user info; credentials come "
                "from settings or the store's environment, never from a dataset URL",
            ),
            await insert_raw_dataset(
                control, "pg-pw", "pgvector", "postgresql://app:hunter2@127.0.0.1/v"
            ): ("open", "BadDatasetURLError: pgvector URL must not carry credentials"),
            no_index: (
                PACKAGED[2],
                f"RevisionApplyError: revision {PACKAGED[2]!r} failed at create_index('chunks', "
                "['id'], kind='btree'): ValueError: Schema Error: Field path `id` not found",
            ),
        }
        return good, broken, no_index

    good, broken, no_index = asyncio.run(provision())
    caplog.set_level(logging.INFO, logger="migrator")
    summary: RunSummary = asyncio.run(run_startup_migrations(settings=control))
    assert summary.status == "partial"
    assert (summary.counts["total"], summary.counts["succeeded"]) == (10, 4)
    assert summary.counts["failed"] == 6
    for dataset_id in good:
        assert asyncio.run(cached(control, dataset_id))["vector_schema_version"] == HEAD
    errors = asyncio.run(_run_errors(control, summary.run_id))
    error_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for dataset_id, (step, error) in broken.items():
        assert errors[dataset_id].startswith(error), errors[dataset_id]
        assert asyncio.run(cached(control, dataset_id))["last_error"] == errors[dataset_id]
        line = next(m for m in error_lines if f"dataset={dataset_id} " in m)
        assert f"status=failed step={step} " in line
        assert f"error={errors[dataset_id]}" in line
    assert not any("hunter2" in str(v) for v in errors.values())
    assert not any("hunter2" in r.getMessage() for r in caplog.records)
    # Revisions 1 and 2 stuck before 3 failed: the cache says so, as the record does.
    assert asyncio.run(cached(control, no_index))["vector_schema_version"] == PACKAGED[1]


def test_a_rerun_after_fixing_the_failure_finishes_and_touches_nothing_else(
    control: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()

    async def scenario() -> tuple[RunSummary, RunSummary, RunSummary]:
        ok = await _add(control, "ok", "lancedb")
        down = await _add(control, "down", "pgvector", "postgresql://127.0.0.1:1/postgres")
        first = await run_startup_migrations(settings=control)
        async with control_plane(control) as engine, engine.begin() as conn:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == down)
                .values(url=url)
            )
        second = await run_startup_migrations(settings=control)
        third = await run_startup_migrations(settings=control)
        assert {d.dataset_id for d in second.datasets} == {down}, ok
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert (first.status, first.counts["failed"]) == ("partial", 1)
    assert (second.status, second.counts["total"]) == ("succeeded", 1)
    assert (third.status, third.counts.get("total")) == ("succeeded", 0)


def _datasets_touched(summary: RunSummary) -> list[tuple[str, str, Any, Any]]:
    return [(d.dataset_id, d.status, d.version_before, d.version_after) for d in summary.datasets]


def test_single_user_mode_migrates_only_the_default_engine(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(ENABLE_BACKEND_ACCESS_CONTROL="false")
    registered: list[str] = []

    async def register(engine: Any) -> None:
        row = await add_dataset(engine, settings, name="tenant", provider="lancedb")
        registered.append(row.url)

    summary = asyncio.run(run_startup_migrations(settings=settings, prepare=register))

    assert summary.status == "succeeded"
    assert _datasets_touched(summary) == [("default", "succeeded", None, HEAD)]
    default_dir = Path(settings.vector_db_url) / "default"
    default = target(str(default_dir), dataset_id="default")
    assert asyncio.run(version_of(default, settings)) == HEAD
    assert not Path(registered[0]).exists()  # the tenant's database was never opened


def test_single_user_mode_with_a_pgvector_default_engine(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    settings = make_settings(
        ENABLE_BACKEND_ACCESS_CONTROL="false", VECTOR_DB_PROVIDER="pgvector", VECTOR_DB_URL=url
    )
    summary = asyncio.run(run_startup_migrations(settings=settings))
    assert _datasets_touched(summary) == [("default", "succeeded", None, HEAD)]
    assert asyncio.run(version_of(target(url, dataset_id="default"), settings)) == HEAD


def test_verify_reads_each_database_own_record_instead_of_the_cache(
    control: Settings, lance_url: UrlFactory
) -> None:
    """The cache says head but the database says revision 1 (restored from a backup, say)."""

    async def provision() -> tuple[str, str]:
        behind = await _add(control, "restored", "lancedb", lance_url())
        at_head = await _add(control, "fine", "lancedb", lance_url())
        for dataset_id, version in ((behind, PACKAGED[0]), (at_head, HEAD)):
            async with control_plane(control) as engine, engine.begin() as conn:
                url = await conn.scalar(
                    sa.select(dataset_databases.c.url).where(
                        dataset_databases.c.dataset_id == dataset_id
                    )
                )
                await conn.execute(
                    dataset_databases.update()
                    .where(dataset_databases.c.dataset_id == dataset_id)
                    .values(vector_schema_version=HEAD)
                )
            async with opened(target(url, dataset_id=dataset_id), control) as adapter:
                await adapter.run_migrations(RevisionGoal(version))
        return behind, at_head

    behind, at_head = asyncio.run(provision())

    trusting = asyncio.run(run_startup_migrations(settings=control))
    assert (trusting.status, trusting.counts.get("total")) == ("succeeded", 0)

    verified = asyncio.run(run_startup_migrations(settings=control, verify=True))
    assert sorted(_datasets_touched(verified)) == sorted(
        [(behind, "succeeded", PACKAGED[0], HEAD), (at_head, "succeeded", HEAD, HEAD)]
    )


def test_concurrency_is_bounded(
    make_settings: Callable[..., Settings], lance_url: UrlFactory
) -> None:
    """With one slot, datasets are migrated one after another: their spans never overlap."""
    from migrator.relational import upgrade_to_head

    settings = make_settings(MIGRATION_CONCURRENCY="1")
    asyncio.run(upgrade_to_head(settings))
    ids = asyncio.run(_add_many(settings, lance_url, 4))
    summary = asyncio.run(run_startup_migrations(settings=settings))
    assert summary.counts["succeeded"] == 4
    spans = asyncio.run(_spans(settings, summary.run_id))
    assert sorted(spans) == sorted(ids)
    ordered = sorted(spans.values())
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(ordered))


async def _add_many(settings: Settings, lance_url: UrlFactory, count: int) -> list[str]:
    names = [f"ds-{uuid.uuid4().hex[:6]}" for _ in range(count)]
    return [await _add(settings, name, "lancedb", lance_url()) for name in names]


async def _spans(settings: Settings, run_id: str) -> dict[str, tuple[Any, Any]]:
    async with control_plane(settings) as engine, engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                migration_run_datasets.c.dataset_id,
                migration_run_datasets.c.started_at,
                migration_run_datasets.c.finished_at,
            ).where(migration_run_datasets.c.run_id == run_id)
        )
        return {d: (s, f) for d, s, f in rows}
