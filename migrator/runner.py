"""The in-process runner: the upstream ``run_startup_migrations()``, recorded, with no broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator import records
from migrator.dataset_job import describe_error, migrate_dataset, migrate_target
from migrator.datasets import default_engine_target, select_pending
from migrator.db import control_plane
from migrator.logging_setup import logs_when_unconfigured
from migrator.models import dataset_databases
from migrator.relational import upgrade_to_head
from migrator.settings import Settings, get_settings
from migrator.summary import DatasetOutcome, RunSummary

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, int], None]
"""Called as ``(done, total, failed)`` after each dataset."""


@logs_when_unconfigured
async def run_startup_migrations(
    *,
    trigger: str = "api",
    requested_by: str | None = None,
    dataset_ids: Sequence[str] | None = None,
    verify: bool = False,
    settings: Settings | None = None,
    on_progress: ProgressCallback | None = None,
    prepare: Callable[[AsyncEngine], Awaitable[object]] | None = None,
) -> RunSummary:
    """Apply every pending schema migration: the control plane, then each vector database.

    Raises ``FileNotFoundError`` when alembic.ini or the migrations folder is missing and
    ``MigrationError`` when Alembic fails; in both cases no dataset is touched. One dataset's
    failure is recorded in the summary and never stops the others. ``prepare`` runs once the
    control plane is at head, before datasets are chosen (``migrator run --demo`` seeds there).
    """
    settings = settings or get_settings()
    started_at = records.utcnow()
    started = time.monotonic()
    try:
        relational = await upgrade_to_head(settings)
    except Exception as exc:
        await _record_relational_failure(settings, trigger, requested_by, started_at, exc)
        raise
    async with control_plane(settings) as engine:
        if prepare is not None:
            await prepare(engine)
        if settings.enable_backend_access_control:
            pending = await select_pending(engine, dataset_ids=dataset_ids, verify=verify)
        else:
            pending = []
        run_id = await records.create_run(
            engine,
            trigger=trigger,
            requested_by=requested_by,
            relational_before=relational.before,
            relational_after=relational.after,
            started_at=started_at,
            options={"verify": verify, "subset": dataset_ids is not None},
        )
        log.info(
            "Run %s (%s): control plane %s -> %s; %d dataset database(s) to migrate.",
            run_id,
            trigger,
            relational.before,
            relational.after,
            len(pending) if settings.enable_backend_access_control else 1,
        )
        if settings.enable_backend_access_control:
            await records.add_run_datasets(engine, run_id, pending)
            await _migrate_all(engine, settings, run_id, pending, on_progress)
        else:
            await _migrate_default_engine(engine, settings, run_id, on_progress)
        summary = await records.finish_run(engine, run_id)
    summary.duration_s = round(time.monotonic() - started, 3)
    log_summary(summary)
    return summary


async def _migrate_all(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    dataset_ids: list[str],
    on_progress: ProgressCallback | None,
) -> None:
    """Bounded concurrency overall and per database server."""
    overall = asyncio.Semaphore(settings.migration_concurrency)
    server_of = await _server_keys(engine, dataset_ids)
    per_server: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(settings.per_server_concurrency)
    )
    done = failed = 0
    total = len(dataset_ids)

    async def one(dataset_id: str) -> None:
        nonlocal done, failed
        async with overall, per_server[server_of.get(dataset_id, "")]:
            outcome = await migrate_dataset(engine, settings, run_id, dataset_id)
        done += 1
        failed += outcome.status in ("failed", "timed_out")
        if on_progress is not None:
            on_progress(done, total, failed)

    await asyncio.gather(*(one(d) for d in dataset_ids))


async def _server_keys(engine: AsyncEngine, dataset_ids: list[str]) -> dict[str, str]:
    if not dataset_ids:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(dataset_databases.c.dataset_id, dataset_databases.c.server_key)
        )
        return {dataset_id: key for dataset_id, key in rows}


async def _migrate_default_engine(
    engine: AsyncEngine, settings: Settings, run_id: str, on_progress: ProgressCallback | None
) -> DatasetOutcome:
    target = default_engine_target(settings)
    await records.add_run_datasets(engine, run_id, [target.dataset_id])
    await records.mark_dataset_running(engine, run_id, target.dataset_id, None)
    outcome = await migrate_target(target, settings)
    await records.mark_dataset_done(engine, run_id, outcome, update_cache=False)
    if on_progress is not None:
        on_progress(1, 1, int(outcome.status in ("failed", "timed_out")))
    return outcome


async def _record_relational_failure(
    settings: Settings,
    trigger: str,
    requested_by: str | None,
    started_at: Any,
    exc: Exception,
) -> None:
    """Record the failed run when the control plane has a run table to hold it."""
    try:
        async with control_plane(settings) as engine:
            run_id = await records.create_run(
                engine,
                trigger=trigger,
                requested_by=requested_by,
                status="failed",
                started_at=started_at,
                error=describe_error(exc, settings),
            )
        exc.run_id = run_id  # type: ignore[attr-defined]
        log.error("Run %s failed in the relational step; no dataset was touched.", run_id)
    except Exception as record_exc:
        log.error(
            "Relational step failed; the run could not be recorded (%s); no dataset was touched.",
            type(record_exc).__name__,
        )


def log_summary(summary: RunSummary) -> None:
    counts = summary.counts
    log.info(
        "Run %s %s: relational %s -> %s; datasets total=%d succeeded=%d failed=%d "
        "timed_out=%d skipped=%d in %.2fs",
        summary.run_id,
        summary.status,
        summary.relational_before,
        summary.relational_after,
        counts.get("total", 0),
        counts.get("succeeded", 0),
        counts.get("failed", 0),
        counts.get("timed_out", 0),
        counts.get("skipped", 0),
        summary.duration_s,
    )
