"""The run store: every read and write of ``migration_runs`` and ``migration_run_datasets``.

Durable and secret-free. The in-process runner and every broker step record runs through this
module only; the dataset cache a recorded outcome refreshes is written through the registry
(``migrator.datasets.update_cache``) inside the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrator.datasets import update_cache
from migrator.db import Bind, aware, connection, iso, transaction, utcnow
from migrator.errors import ControlPlaneNotReadyError, RunNotFoundError
from migrator.models import dataset_databases, migration_run_datasets, migration_runs
from migrator.runs.summary import DatasetOutcome, RunSummary
from migrator.states import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    DatasetStatus,
    RunStatus,
    count_badly,
)

BULK_INSERT_ROWS = 1000
PROGRESS_TOUCH_INTERVAL = timedelta(seconds=1)
# Running datasets whose long operation a waiting trigger shows, at most.
OPERATIONS_SHOWN = 5

runs = migration_runs
rows = migration_run_datasets


# --- runs ------------------------------------------------------------------------------------


async def create_run(
    engine: AsyncEngine,
    *,
    trigger: str,
    requested_by: str | None = None,
    relational_before: str | None = None,
    relational_after: str | None = None,
    status: RunStatus = RunStatus.RUNNING,
    started_at: datetime | None = None,
    celery_task_id: str | None = None,
    options: dict[str, Any] | None = None,
    error: str | None = None,
    run_id: str | None = None,
) -> str:
    """Record a new run (``running``, or already ``failed`` with ``error``); returns its id."""
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
        "finished_at": now if status != RunStatus.RUNNING else None,
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(runs.insert().values(**values))
    except (OperationalError, ProgrammingError) as exc:
        if "migration_runs" in str(exc):
            raise ControlPlaneNotReadyError(
                "control-plane table migration_runs is missing; run the relational step first"
            ) from exc
        raise
    return run_id


async def touch_run(conn: AsyncConnection, run_id: str, now: datetime) -> None:
    """Advance the run's ``last_progress_at``, at most once per PROGRESS_TOUCH_INTERVAL.

    Every dataset reports progress; writing the one run row each time would serialise all
    concurrent datasets on its row lock. A non-matching UPDATE takes no lock.
    """
    await conn.execute(
        runs.update()
        .where(runs.c.id == run_id, runs.c.last_progress_at < now - PROGRESS_TOUCH_INTERVAL)
        .values(last_progress_at=now)
    )


async def fail_run(
    engine: AsyncEngine, run_id: str, error: str, *, only_running: bool = False
) -> bool:
    """Mark a run failed with ``error``; with ``only_running``, not when it finished meanwhile
    (a late chord body wins the race). True when the row changed."""
    query = runs.update().where(runs.c.id == run_id)
    if only_running:
        query = query.where(runs.c.status == RunStatus.RUNNING)
    async with engine.begin() as conn:
        updated = await conn.execute(
            query.values(status=RunStatus.FAILED, error=error, finished_at=utcnow())
        )
    return bool(updated.rowcount)


def final_status(counts: dict[str, int]) -> RunStatus:
    """A finished run's status from its dataset counts; a dataset that never reported means
    the run cannot be called a success; one deferred means it halted."""
    if counts.get(DatasetStatus.DEFERRED, 0):
        return RunStatus.HALTED
    if count_badly(counts) or any(counts.get(s, 0) for s in OPEN_STATUSES):
        return RunStatus.PARTIAL
    return RunStatus.SUCCEEDED


async def close_run(engine: AsyncEngine, run_id: str) -> RunSummary:
    """Aggregate the run's dataset rows into its final status and counts; returns the run."""
    counts = await dataset_counts(engine, run_id)
    status = final_status(counts)
    if status == RunStatus.SUCCEEDED and (await run_options(engine, run_id)).get("source_errors"):
        status = RunStatus.PARTIAL  # rows of the dataset source were refused: not all is well
    error = await _halt_reason(engine, run_id) if status == RunStatus.HALTED else None
    async with engine.begin() as conn:
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(
                status=status,
                error=error,
                finished_at=utcnow(),
                succeeded_count=counts.get(DatasetStatus.SUCCEEDED, 0),
                failed_count=count_badly(counts),
                skipped_count=counts.get(DatasetStatus.SKIPPED, 0),
            )
        )
    return await get_run(engine, run_id)


async def _halt_reason(engine: AsyncEngine, run_id: str) -> str | None:
    """Why a halted run halted: the reason its first deferred row records."""
    async with engine.connect() as conn:
        reason: str | None = await conn.scalar(
            sa.select(rows.c.error)
            .where(rows.c.run_id == run_id, rows.c.status == DatasetStatus.DEFERRED)
            .order_by(rows.c.finished_at, rows.c.dataset_id)
            .limit(1)
        )
    return reason.removesuffix("; not started") if reason else None


async def run_options(bind: Bind, run_id: str) -> dict[str, Any]:
    """What the run record keeps of its request (``{}`` when the run is not recorded)."""
    async with connection(bind) as conn:
        options = await conn.scalar(sa.select(runs.c.options).where(runs.c.id == run_id))
    return dict(options or {})


async def advance_stage(engine: AsyncEngine, run_id: str, stage: int) -> bool:
    """Move a running run from ``stage`` to the next; True for the one caller that did (a
    second chord body for the same stage, redelivered or forged, sends nothing)."""
    async with engine.begin() as conn:
        moved = await conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.stage == stage, runs.c.status == RunStatus.RUNNING)
            .values(stage=stage + 1)
        )
    return bool(moved.rowcount)


async def current_stage(engine: AsyncEngine, run_id: str) -> int:
    """The stage whose chord the run sent last."""
    async with engine.connect() as conn:
        stage = await conn.scalar(sa.select(runs.c.stage).where(runs.c.id == run_id))
    return int(stage or 0)


# --- dataset rows ----------------------------------------------------------------------------


async def add_run_datasets(
    engine: AsyncEngine,
    run_id: str,
    dataset_ids: Iterable[str],
    stage_of: dict[str, int] | None = None,
) -> int:
    """Add the run's datasets as ``pending`` rows (in their stage, 0 unless ``stage_of`` says)
    and count them in its total."""
    stages = stage_of or {}
    new_rows = [
        {
            "run_id": run_id,
            "dataset_id": d,
            "status": DatasetStatus.PENDING,
            "stage": stages.get(d, 0),
        }
        for d in dataset_ids
    ]
    async with engine.begin() as conn:
        for start in range(0, len(new_rows), BULK_INSERT_ROWS):
            await conn.execute(rows.insert(), new_rows[start : start + BULK_INSERT_ROWS])
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(total_count=runs.c.total_count + len(new_rows))
        )
    return len(new_rows)


def _row(run_id: str, dataset_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(rows.c.run_id == run_id, rows.c.dataset_id == dataset_id)


async def mark_dataset_running(
    bind: Bind, run_id: str, dataset_id: str, version_before: str | None
) -> None:
    """A delivery starts on the dataset: ``running``, one attempt more."""
    now = utcnow()
    async with transaction(bind) as conn:
        await conn.execute(
            rows.update()
            .where(_row(run_id, dataset_id))
            .values(
                status=DatasetStatus.RUNNING,
                started_at=now,
                version_before=version_before,
                attempts=rows.c.attempts + 1,
            )
        )
        await touch_run(conn, run_id, now)


async def write_progress(
    bind: Bind, run_id: str, dataset_id: str, progress: dict[str, Any]
) -> bool:
    """Record how a running dataset's long operation is doing (``progress``: operation,
    phase, done, total, unit; ``updated_at`` is added here). Only a ``running`` row takes it,
    so a late sample never lands on a finished one; the run counts as making progress, so a
    long index build does not read as a stale run. False when the row was not running."""
    now = utcnow()
    async with transaction(bind) as conn:
        updated = await conn.execute(
            rows.update()
            .where(_row(run_id, dataset_id), rows.c.status == DatasetStatus.RUNNING)
            .values(progress={**progress, "updated_at": iso(now)})
        )
        if not updated.rowcount:
            return False
        await touch_run(conn, run_id, now)
    return True


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


async def mark_dataset_done(
    bind: Bind,
    run_id: str,
    outcome: DatasetOutcome,
    *,
    update_dataset_cache: bool = True,
    quarantine_after_runs: int | None = None,
) -> bool:
    """Record a dataset's outcome and, for registered datasets, refresh the control plane's
    cache of it; True when this outcome quarantined the dataset (``quarantine_after_runs``
    runs in a row whose migration itself raised)."""
    quarantined = False
    now = utcnow()
    async with transaction(bind) as conn:
        await conn.execute(
            rows.update()
            .where(_row(run_id, outcome.dataset_id))
            .values(**outcome_values(outcome, now))
        )
        if update_dataset_cache:
            succeeded = outcome.status == DatasetStatus.SUCCEEDED
            quarantined = await update_cache(
                conn,
                outcome.dataset_id,
                error=outcome.error,
                version_after=outcome.version_after,
                migrated_at=now if succeeded else None,
                revision_failed=outcome.revision_failed,
                quarantine_after_runs=quarantine_after_runs,
            )
        await touch_run(conn, run_id, now)
    return quarantined


async def close_open_row(engine: AsyncEngine, run_id: str, outcome: DatasetOutcome) -> bool:
    """Record ``outcome`` only where the row has none yet; False when it already had one.

    For outcomes written on someone else's behalf (a timed-out delivery, the chord body filling
    in what never reported): a real outcome recorded first always wins.
    """
    now = utcnow()
    async with engine.begin() as conn:
        updated = await conn.execute(
            rows.update()
            .where(_row(run_id, outcome.dataset_id), rows.c.status.in_(OPEN_STATUSES))
            .values(**outcome_values(outcome, now))
        )
        if not updated.rowcount:
            return False
        if outcome.error:
            await update_cache(conn, outcome.dataset_id, error=outcome.error)
        await touch_run(conn, run_id, now)
    return True


async def defer_pending(
    engine: AsyncEngine,
    run_id: str,
    reason: str,
    *,
    dataset_id: str | None = None,
    after_stage: int | None = None,
) -> int:
    """Record ``deferred`` with ``reason`` on the run's rows that never started (one row with
    ``dataset_id``; those of stages after ``after_stage``); running ones finish. Returns how
    many rows it deferred."""
    query = rows.update().where(rows.c.run_id == run_id, rows.c.status == DatasetStatus.PENDING)
    if dataset_id is not None:
        query = query.where(rows.c.dataset_id == dataset_id)
    if after_stage is not None:
        query = query.where(rows.c.stage > after_stage)
    now = utcnow()
    async with engine.begin() as conn:
        deferred = await conn.execute(
            query.values(status=DatasetStatus.DEFERRED, error=reason, finished_at=now)
        )
        await touch_run(conn, run_id, now)
    return int(deferred.rowcount)


# --- reads -----------------------------------------------------------------------------------


async def dataset_counts(bind: Bind, run_id: str, stage: int | None = None) -> dict[str, int]:
    """How many of the run's datasets (of one ``stage``) are in each status."""
    query = sa.select(rows.c.status, sa.func.count()).where(rows.c.run_id == run_id)
    if stage is not None:
        query = query.where(rows.c.stage == stage)
    async with connection(bind) as conn:
        counted = await conn.execute(query.group_by(rows.c.status))
        return {status: count for status, count in counted}


async def get_run(
    engine: AsyncEngine,
    run_id: str,
    *,
    dataset_statuses: Sequence[DatasetStatus] | None = None,
) -> RunSummary:
    """A run and its dataset rows; ``dataset_statuses`` limits which rows are loaded."""
    async with engine.connect() as conn:
        run = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).first()
        if run is None:
            raise RunNotFoundError(f"no migration run with id {run_id!r}")
        # Outer join: a dataset removed since the run still has its row, shown by id alone.
        query = (
            sa.select(rows, dataset_databases.c.name)
            .outerjoin(dataset_databases, dataset_databases.c.dataset_id == rows.c.dataset_id)
            .where(rows.c.run_id == run_id)
        )
        if dataset_statuses is not None:
            query = query.where(rows.c.status.in_(dataset_statuses))
        found = (await conn.execute(query.order_by(rows.c.dataset_id))).all()
        counts = await dataset_counts(conn, run_id)
    counts["total"] = run.total_count
    started = aware(run.started_at)
    finished = aware(run.finished_at) if run.finished_at else None
    duration_s = ((finished or utcnow()) - started).total_seconds()
    return RunSummary(
        run_id=run.id,
        trigger=run.trigger,
        status=RunStatus(run.status),
        relational_before=run.relational_before,
        relational_after=run.relational_after,
        counts=counts,
        datasets=[_outcome(row, row.name) for row in found],
        duration_s=round(duration_s, 3),
        started_at=iso(started),
        finished_at=iso(finished),
        error=run.error,
        source_errors=list((run.options or {}).get("source_errors") or []),
    )


async def list_runs(engine: AsyncEngine, limit: int = 20) -> list[dict[str, Any]]:
    """Run history, newest first."""
    async with engine.connect() as conn:
        found = await conn.execute(sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit))
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
                "started_at": iso(r.started_at),
                "finished_at": iso(r.finished_at),
                "error": r.error,
            }
            for r in found
        ]


@dataclass(frozen=True)
class RunState:
    """A run's status and when it last moved: enough to tell live from stale."""

    run_id: str
    status: RunStatus
    last_progress_at: datetime

    def idle_s(self, now: datetime | None = None) -> float:
        """Seconds since the run last made progress."""
        return ((now or utcnow()) - self.last_progress_at).total_seconds()


def _state(run_id: str, status: str, row: Any) -> RunState:
    return RunState(run_id, RunStatus(status), aware(row.last_progress_at or row.started_at))


async def run_state(engine: AsyncEngine, run_id: str) -> RunState | None:
    """The run's state; None when it is not recorded."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(runs.c.status, runs.c.last_progress_at, runs.c.started_at).where(
                    runs.c.id == run_id
                )
            )
        ).first()
    return _state(run_id, row.status, row) if row is not None else None


async def running_runs(engine: AsyncEngine) -> list[RunState]:
    """Every run recorded as running (few: one at a time, plus any that went stale)."""
    async with engine.connect() as conn:
        found = await conn.execute(
            sa.select(runs.c.id, runs.c.last_progress_at, runs.c.started_at).where(
                runs.c.status == RunStatus.RUNNING
            )
        )
        return [_state(r.id, RunStatus.RUNNING, r) for r in found]


async def last_finished_at(engine: AsyncEngine) -> datetime | None:
    """When the most recent run finished (None when none has)."""
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.max(runs.c.finished_at)))
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregates of datetimes as text
        value = datetime.fromisoformat(value)
    return aware(value)


@dataclass(frozen=True)
class DatasetOperation:
    """A running dataset's long operation, as last recorded."""

    dataset_id: str
    name: str | None
    progress: dict[str, Any]


@dataclass(frozen=True)
class RunProgress:
    """What a waiting trigger shows: datasets done of total, failures so far, and the long
    operations of running datasets (at most OPERATIONS_SHOWN)."""

    status: RunStatus
    total: int
    done: int
    failed: int
    operations: tuple[DatasetOperation, ...] = ()


async def read_progress(engine: AsyncEngine, run_id: str) -> RunProgress | None:
    """The run's progress; None when it is not recorded."""
    async with engine.connect() as conn:
        run = (
            await conn.execute(
                sa.select(runs.c.status, runs.c.total_count).where(runs.c.id == run_id)
            )
        ).first()
        if run is None:
            return None
        counts = await dataset_counts(conn, run_id)
        operations = await _running_operations(conn, run_id)
    done = sum(counts.get(s, 0) for s in FINAL_STATUSES)
    return RunProgress(
        RunStatus(run.status), run.total_count, done, count_badly(counts), operations
    )


async def _running_operations(conn: AsyncConnection, run_id: str) -> tuple[DatasetOperation, ...]:
    found = await conn.execute(
        sa.select(rows.c.dataset_id, rows.c.progress, dataset_databases.c.name)
        .outerjoin(dataset_databases, dataset_databases.c.dataset_id == rows.c.dataset_id)
        .where(
            rows.c.run_id == run_id,
            rows.c.status == DatasetStatus.RUNNING,
            rows.c.progress.is_not(None),
        )
        .order_by(rows.c.dataset_id)
        .limit(OPERATIONS_SHOWN)
    )
    return tuple(
        DatasetOperation(r.dataset_id, r.name, dict(r.progress))
        for r in found
        if isinstance(r.progress, dict)  # a JSON null reads as None on some drivers
    )


def _outcome(row: Any, name: str | None = None) -> DatasetOutcome:
    """What a ``migration_run_datasets`` row records, as an outcome (still open or final)."""
    return DatasetOutcome(
        row.dataset_id,
        DatasetStatus(row.status),
        row.version_before,
        row.version_after,
        row.duration_ms or 0,
        row.error,
        name=name,
        progress=dict(row.progress) if isinstance(row.progress, dict) else None,
    )


@dataclass(frozen=True)
class RunDatasetRow:
    """One dataset's row in one run, as a delivery needs it: the deliveries that started it so
    far, and what it records (a delivery that finds it final reports that)."""

    attempts: int
    outcome: DatasetOutcome


async def get_run_dataset(bind: Bind, run_id: str, dataset_id: str) -> RunDatasetRow | None:
    """The dataset's row in the run; None when the dataset is not part of it."""
    async with connection(bind) as conn:
        row = (await conn.execute(sa.select(rows).where(_row(run_id, dataset_id)))).first()
    return RunDatasetRow(row.attempts, _outcome(row)) if row is not None else None


async def dataset_ids_in(
    engine: AsyncEngine,
    run_id: str,
    statuses: Sequence[DatasetStatus],
    stage: int | None = None,
) -> list[str]:
    """The run's datasets (of one ``stage``) in one of ``statuses``, by id."""
    query = sa.select(rows.c.dataset_id).where(rows.c.run_id == run_id, rows.c.status.in_(statuses))
    if stage is not None:
        query = query.where(rows.c.stage == stage)
    async with engine.connect() as conn:
        return list(await conn.scalars(query.order_by(rows.c.dataset_id)))


async def open_dataset_ids(engine: AsyncEngine, run_id: str) -> list[str]:
    """A run's datasets that have no outcome yet."""
    return await dataset_ids_in(engine, run_id, OPEN_STATUSES)


async def succeeded_durations_ms(
    engine: AsyncEngine,
) -> dict[tuple[str | None, str | None], tuple[float, int]]:
    """Mean duration and count of earlier successful migrations, by revision before and after
    (what a plan's estimate is made of)."""
    query = (
        sa.select(
            rows.c.version_before,
            rows.c.version_after,
            sa.func.avg(rows.c.duration_ms),
            sa.func.count(),
        )
        .where(rows.c.status == DatasetStatus.SUCCEEDED, rows.c.duration_ms.is_not(None))
        .group_by(rows.c.version_before, rows.c.version_after)
    )
    async with engine.connect() as conn:
        return {(b, a): (float(avg or 0), int(n)) for b, a, avg, n in await conn.execute(query)}


async def run_status(engine: AsyncEngine, run_id: str) -> RunStatus:
    """The run's recorded status; ``RunNotFoundError`` when it is not recorded."""
    async with engine.connect() as conn:
        status = await conn.scalar(sa.select(runs.c.status).where(runs.c.id == run_id))
    if status is None:
        raise RunNotFoundError(f"no migration run with id {run_id!r}")
    return RunStatus(status)


@dataclass(frozen=True)
class DeliveryReads:
    """What a dataset's delivery reads before it migrates, in one query: its row in the run
    (None when the dataset is not part of it), the run's options and the dataset's server."""

    row: RunDatasetRow | None
    options: dict[str, Any]
    server_key: str | None


async def delivery_reads(bind: Bind, run_id: str, dataset_id: str) -> DeliveryReads:
    """The row, the run's options and the server key in one round trip (the subtask read them
    in three, each on its own pooled connection with its pre-ping)."""
    options = sa.select(runs.c.options).where(runs.c.id == run_id).scalar_subquery()
    server_key = (
        sa.select(dataset_databases.c.server_key)
        .where(dataset_databases.c.dataset_id == dataset_id)
        .scalar_subquery()
    )
    query = (
        sa.select(
            sa.literal(1).label("found"),
            options.label("run_options"),
            server_key.label("dataset_server_key"),
            rows,
        )
        .select_from(sa.select(sa.literal(1).label("one")).subquery())
        .outerjoin(rows, _row(run_id, dataset_id))
    )
    async with connection(bind) as conn:
        found = (await conn.execute(query)).one()
    row = RunDatasetRow(found.attempts, _outcome(found)) if found.run_id is not None else None
    return DeliveryReads(row, dict(found.run_options or {}), found.dataset_server_key or None)
