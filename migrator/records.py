"""Run records: ``migration_runs`` and ``migration_run_datasets``. Durable, secret-free."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrator.db import Bind, transaction
from migrator.errors import ControlPlaneNotReadyError, RunNotFoundError
from migrator.models import dataset_databases, datasets, migration_run_datasets, migration_runs
from migrator.summary import DatasetOutcome, RunSummary

FINAL_DATASET_STATUSES = ("succeeded", "failed", "skipped", "timed_out")
BULK_INSERT_ROWS = 1000
PROGRESS_TOUCH_INTERVAL = timedelta(seconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def create_run(
    engine: AsyncEngine,
    *,
    trigger: str,
    requested_by: str | None = None,
    relational_before: str | None = None,
    relational_after: str | None = None,
    status: str = "running",
    started_at: datetime | None = None,
    celery_task_id: str | None = None,
    options: dict[str, Any] | None = None,
    error: str | None = None,
    run_id: str | None = None,
) -> str:
    run_id = run_id or str(uuid.uuid4())
    now = utcnow()
    values = {
        "id": run_id,
        "trigger": trigger,
        "requested_by": requested_by,
        "status": status,
        "relational_before": relational_before,
        "relational_after": relational_after,
        "started_at": started_at or now,
        "last_progress_at": now,
        "celery_task_id": celery_task_id,
        "options": options or {},
        "error": error,
        "finished_at": now if status != "running" else None,
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(migration_runs.insert().values(**values))
    except (OperationalError, ProgrammingError) as exc:
        if "migration_runs" in str(exc):
            raise ControlPlaneNotReadyError(
                "control-plane table migration_runs is missing; run the relational step first"
            ) from exc
        raise
    return run_id


async def add_run_datasets(engine: AsyncEngine, run_id: str, dataset_ids: Iterable[str]) -> int:
    rows = [{"run_id": run_id, "dataset_id": d, "status": "pending"} for d in dataset_ids]
    async with engine.begin() as conn:
        for start in range(0, len(rows), BULK_INSERT_ROWS):
            await conn.execute(
                migration_run_datasets.insert(), rows[start : start + BULK_INSERT_ROWS]
            )
        await conn.execute(
            migration_runs.update()
            .where(migration_runs.c.id == run_id)
            .values(total_count=migration_runs.c.total_count + len(rows))
        )
    return len(rows)


async def mark_dataset_running(
    bind: Bind, run_id: str, dataset_id: str, version_before: int | None
) -> None:
    now = utcnow()
    async with transaction(bind) as conn:
        await conn.execute(
            migration_run_datasets.update()
            .where(
                migration_run_datasets.c.run_id == run_id,
                migration_run_datasets.c.dataset_id == dataset_id,
            )
            .values(
                status="running",
                started_at=now,
                version_before=version_before,
                attempts=migration_run_datasets.c.attempts + 1,
            )
        )
        await touch_run(conn, run_id, now)


async def mark_dataset_done(
    bind: Bind, run_id: str, outcome: DatasetOutcome, *, update_cache: bool = True
) -> None:
    """Record a dataset's outcome and, for real datasets, refresh the control plane's cache."""
    now = utcnow()
    async with transaction(bind) as conn:
        await conn.execute(
            migration_run_datasets.update()
            .where(
                migration_run_datasets.c.run_id == run_id,
                migration_run_datasets.c.dataset_id == outcome.dataset_id,
            )
            .values(**outcome_values(outcome, now))
        )
        if update_cache:
            cache: dict[str, Any] = {"last_error": outcome.error}
            if outcome.version_after is not None:
                cache["vector_schema_version"] = outcome.version_after
            if outcome.status == "succeeded":
                cache["last_migrated_at"] = now
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == outcome.dataset_id)
                .values(**cache)
            )
        await touch_run(conn, run_id, now)


def outcome_values(outcome: DatasetOutcome, now: datetime) -> dict[str, Any]:
    """The ``migration_run_datasets`` columns that record a dataset's outcome."""
    return {
        "status": outcome.status,
        "version_before": outcome.version_before,
        "version_after": outcome.version_after,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error,
        "finished_at": now,
    }


async def touch_run(conn: AsyncConnection, run_id: str, now: datetime) -> None:
    """Advance the run's ``last_progress_at``, at most once per PROGRESS_TOUCH_INTERVAL.

    Every dataset reports progress; writing the one run row each time would serialise all
    concurrent datasets on its row lock. A non-matching UPDATE takes no lock.
    """
    await conn.execute(
        migration_runs.update()
        .where(
            migration_runs.c.id == run_id,
            migration_runs.c.last_progress_at < now - PROGRESS_TOUCH_INTERVAL,
        )
        .values(last_progress_at=now)
    )


async def fail_run(engine: AsyncEngine, run_id: str, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            migration_runs.update()
            .where(migration_runs.c.id == run_id)
            .values(status="failed", error=error, finished_at=utcnow())
        )


async def dataset_counts(engine: AsyncEngine, run_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(migration_run_datasets.c.status, sa.func.count())
            .where(migration_run_datasets.c.run_id == run_id)
            .group_by(migration_run_datasets.c.status)
        )
        return {status: count for status, count in rows}


def run_status(counts: dict[str, int], error: str | None) -> str:
    if error:
        return "failed"
    if counts.get("failed", 0) or counts.get("timed_out", 0):
        return "partial"
    if counts.get("pending", 0) or counts.get("running", 0):
        return "running"
    return "succeeded"


async def finish_run(engine: AsyncEngine, run_id: str, error: str | None = None) -> RunSummary:
    """Aggregate the run's dataset rows into its final status and counts."""
    counts = await dataset_counts(engine, run_id)
    status = run_status(counts, error)
    if status == "running":
        # Something never reported; the run cannot be called a success.
        status = "partial"
    async with engine.begin() as conn:
        await conn.execute(
            migration_runs.update()
            .where(migration_runs.c.id == run_id)
            .values(
                status=status,
                error=error,
                finished_at=utcnow(),
                succeeded_count=counts.get("succeeded", 0),
                failed_count=counts.get("failed", 0) + counts.get("timed_out", 0),
                skipped_count=counts.get("skipped", 0),
            )
        )
    return await get_run(engine, run_id)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat() if value is not None else None


async def get_run(
    engine: AsyncEngine, run_id: str, *, dataset_statuses: tuple[str, ...] | None = None
) -> RunSummary:
    """A run and its dataset rows; ``dataset_statuses`` limits which rows are loaded."""
    async with engine.connect() as conn:
        run = (
            await conn.execute(sa.select(migration_runs).where(migration_runs.c.id == run_id))
        ).first()
        if run is None:
            raise RunNotFoundError(f"no migration run with id {run_id!r}")
        # Outer join: a dataset removed since the run still has its row, shown by id alone.
        query = (
            sa.select(migration_run_datasets, datasets.c.name)
            .outerjoin(datasets, datasets.c.id == migration_run_datasets.c.dataset_id)
            .where(migration_run_datasets.c.run_id == run_id)
        )
        if dataset_statuses is not None:
            query = query.where(migration_run_datasets.c.status.in_(dataset_statuses))
        rows = (await conn.execute(query.order_by(migration_run_datasets.c.dataset_id))).all()
    counts = await dataset_counts(engine, run_id)
    counts["total"] = run.total_count
    started = _aware(run.started_at)
    finished = _aware(run.finished_at) if run.finished_at else None
    duration_s = ((finished or utcnow()) - started).total_seconds()
    return RunSummary(
        run_id=run.id,
        trigger=run.trigger,
        status=run.status,
        relational_before=run.relational_before,
        relational_after=run.relational_after,
        counts=counts,
        datasets=[
            DatasetOutcome(
                dataset_id=row.dataset_id,
                status=row.status,
                version_before=row.version_before,
                version_after=row.version_after,
                duration_ms=row.duration_ms or 0,
                error=row.error,
                name=row.name,
            )
            for row in rows
        ],
        duration_s=round(duration_s, 3),
        started_at=_iso(started),
        finished_at=_iso(finished),
        error=run.error,
    )


async def list_runs(engine: AsyncEngine, limit: int = 20) -> list[dict[str, Any]]:
    """Run history, newest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(migration_runs).order_by(migration_runs.c.started_at.desc()).limit(limit)
        )
        return [
            {
                "run_id": r.id,
                "trigger": r.trigger,
                "status": r.status,
                "requested_by": r.requested_by,
                "relational": f"{r.relational_before or '-'} -> {r.relational_after or '-'}",
                "total": r.total_count,
                "succeeded": r.succeeded_count,
                "failed": r.failed_count,
                "skipped": r.skipped_count,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "error": r.error,
            }
            for r in rows
        ]
