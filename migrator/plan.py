"""What a broker run covers, and the small reads and writes of run state it needs.

A trigger's ``RunRequest`` travels in the parent task's message as ids and flags only; the
parent turns it into a list of dataset ids here, after the relational step, from the control
plane. Nothing here imports Celery.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import DEFAULT_ENGINE_ID
from migrator.datasets import ID_BATCH, select_pending, validate_dataset_id
from migrator.db import Bind, connection
from migrator.errors import MessageRefusedError, RunNotFoundError
from migrator.models import RUN_TRIGGERS, dataset_databases, migration_run_datasets, migration_runs
from migrator.records import FINAL_DATASET_STATUSES, outcome_values, touch_run, utcnow
from migrator.settings import Settings
from migrator.summary import DatasetOutcome

log = logging.getLogger(__name__)

# What `--retry-failed` picks up from a run: what failed, and what never finished.
RETRY_STATUSES = ("failed", "timed_out", "pending", "running")
OPEN_STATUSES = ("pending", "running")


@dataclass(frozen=True)
class RunRequest:
    """What a trigger asks for. ``extra_ids`` are added to the pending selection (the scheduled
    check's drifted datasets, whose cache says head)."""

    run_id: str
    trigger: str
    requested_by: str | None = None
    dataset_ids: tuple[str, ...] | None = None
    verify: bool = False
    retry_of: str | None = None
    extra_ids: tuple[str, ...] = field(default_factory=tuple)

    def options(self) -> dict[str, Any]:
        """What the run record keeps of the request."""
        return {
            "verify": self.verify,
            "subset": self.dataset_ids is not None,
            "retry_of": self.retry_of,
            "extra": len(self.extra_ids),
        }

    def to_message(self) -> dict[str, Any]:
        """Keyword arguments of the parent task: JSON types, ids and flags only."""
        return {
            "trigger": self.trigger,
            "requested_by": self.requested_by,
            "dataset_ids": list(self.dataset_ids) if self.dataset_ids is not None else None,
            "verify": self.verify,
            "retry_of": self.retry_of,
            "extra_ids": list(self.extra_ids),
        }

    @classmethod
    def from_message(cls, run_id: str, message: dict[str, Any]) -> RunRequest:
        """The request a parent task's message carries; ``MessageRefusedError`` for anything
        else (a forged message naming a URL or a path, or one from an incompatible release).
        The refusal names fields, never their values."""
        _check_message(run_id, message)
        dataset_ids = message.get("dataset_ids")
        return cls(
            run_id=run_id,
            trigger=str(message["trigger"]),
            requested_by=message.get("requested_by"),
            dataset_ids=tuple(dataset_ids) if dataset_ids is not None else None,
            verify=bool(message.get("verify", False)),
            retry_of=message.get("retry_of"),
            extra_ids=tuple(message.get("extra_ids") or ()),
        )


_MESSAGE_FIELDS = {"trigger", "requested_by", "dataset_ids", "verify", "retry_of", "extra_ids"}


def _check_message(run_id: Any, message: dict[str, Any]) -> None:
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        raise MessageRefusedError(
            f"task message refused: unexpected field(s) {', '.join(map(repr, unknown))}"
        )
    lists = [message.get("dataset_ids"), message.get("extra_ids")]
    kinds_ok = (
        message.get("trigger") in RUN_TRIGGERS
        and isinstance(run_id, str)
        and all(isinstance(message.get(k), str | None) for k in ("requested_by", "retry_of"))
        and isinstance(message.get("verify", False), bool)
        and all(
            ids is None or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
            for ids in lists
        )
    )
    if not kinds_ok:
        raise MessageRefusedError(
            f"task message refused: fields must be: trigger one of {', '.join(RUN_TRIGGERS)}; "
            "ids as strings; verify a boolean"
        )
    if not all(i is None or _is_uuid(i) for i in (run_id, message.get("retry_of"))):
        raise MessageRefusedError("task message refused: run ids must be UUIDs")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def select_datasets(
    engine: AsyncEngine, settings: Settings, request: RunRequest
) -> list[str]:
    """The dataset ids one run migrates, one subtask each."""
    if not settings.enable_backend_access_control:
        return [DEFAULT_ENGINE_ID]
    if request.retry_of is not None:
        return await retry_selection(engine, request.retry_of)
    chosen = await select_pending(engine, dataset_ids=request.dataset_ids, verify=request.verify)
    if request.extra_ids:
        seen = set(chosen)
        chosen += [d for d in await registered_ids(engine, request.extra_ids) if d not in seen]
    return chosen


async def retry_selection(engine: AsyncEngine, run_id: str) -> list[str]:
    """What failed or never finished in ``run_id`` and is still registered.

    A run that failed in the relational step touched no dataset, so everything pending then is
    still pending: its retry is an ordinary pending selection.
    """
    async with engine.connect() as conn:
        status = await conn.scalar(
            sa.select(migration_runs.c.status).where(migration_runs.c.id == run_id)
        )
        if status is None:
            raise RunNotFoundError(f"no migration run with id {run_id!r}")
        rows = (
            await conn.execute(
                sa.select(migration_run_datasets.c.dataset_id, migration_run_datasets.c.status)
                .where(migration_run_datasets.c.run_id == run_id)
                .order_by(migration_run_datasets.c.dataset_id)
            )
        ).all()
    if not rows and status == "failed":
        return await select_pending(engine)
    wanted = [dataset_id for dataset_id, row_status in rows if row_status in RETRY_STATUSES]
    kept = await registered_ids(engine, wanted)
    if len(kept) < len(wanted):
        log.warning(
            "Retry of run %s: %d dataset(s) are no longer registered and are left out.",
            run_id,
            len(wanted) - len(kept),
        )
    return kept


async def registered_ids(engine: AsyncEngine, dataset_ids: Sequence[str]) -> list[str]:
    """``dataset_ids`` that are registered, in the given order; invalid ids are errors."""
    wanted = list(dict.fromkeys(validate_dataset_id(d) for d in dataset_ids))
    found: set[str] = set()
    async with engine.connect() as conn:
        for start in range(0, len(wanted), ID_BATCH):
            found.update(
                await conn.scalars(
                    sa.select(dataset_databases.c.dataset_id).where(
                        dataset_databases.c.dataset_id.in_(wanted[start : start + ID_BATCH])
                    )
                )
            )
    return [d for d in wanted if d in found]


@dataclass(frozen=True)
class RunState:
    """A run's status and when it last moved: enough to tell live from stale."""

    run_id: str
    status: str
    last_progress_at: datetime

    def idle_s(self, now: datetime | None = None) -> float:
        return ((now or utcnow()) - self.last_progress_at).total_seconds()


async def run_state(engine: AsyncEngine, run_id: str) -> RunState | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    migration_runs.c.status,
                    migration_runs.c.last_progress_at,
                    migration_runs.c.started_at,
                ).where(migration_runs.c.id == run_id)
            )
        ).first()
    if row is None:
        return None
    return RunState(run_id, row.status, _aware(row.last_progress_at or row.started_at))


async def running_runs(engine: AsyncEngine) -> list[RunState]:
    """Every run recorded as running (few: one at a time, plus any that went stale)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                migration_runs.c.id, migration_runs.c.last_progress_at, migration_runs.c.started_at
            ).where(migration_runs.c.status == "running")
        )
        return [RunState(r.id, "running", _aware(r.last_progress_at or r.started_at)) for r in rows]


@dataclass(frozen=True)
class RunProgress:
    """What a waiting trigger shows: datasets done of total, failures so far."""

    status: str
    total: int
    done: int
    failed: int


async def read_progress(engine: AsyncEngine, run_id: str) -> RunProgress | None:
    async with engine.connect() as conn:
        run = (
            await conn.execute(
                sa.select(migration_runs.c.status, migration_runs.c.total_count).where(
                    migration_runs.c.id == run_id
                )
            )
        ).first()
        if run is None:
            return None
        counts = dict(
            (
                await conn.execute(
                    sa.select(migration_run_datasets.c.status, sa.func.count())
                    .where(migration_run_datasets.c.run_id == run_id)
                    .group_by(migration_run_datasets.c.status)
                )
            ).all()
        )
    done = sum(counts.get(s, 0) for s in FINAL_DATASET_STATUSES)
    failed = counts.get("failed", 0) + counts.get("timed_out", 0)
    return RunProgress(run.status, run.total_count, done, failed)


@dataclass(frozen=True)
class RunDatasetRow:
    status: str
    attempts: int
    version_before: int | None = None
    version_after: int | None = None
    duration_ms: int | None = None
    error: str | None = None

    def outcome(self, dataset_id: str) -> DatasetOutcome:
        """The outcome this row records (for a delivery that finds the work already done)."""
        return DatasetOutcome(
            dataset_id,
            self.status,
            self.version_before,
            self.version_after,
            self.duration_ms or 0,
            self.error,
        )


async def get_run_dataset(bind: Bind, run_id: str, dataset_id: str) -> RunDatasetRow | None:
    table = migration_run_datasets
    async with connection(bind) as conn:
        row = (
            await conn.execute(
                sa.select(
                    table.c.status,
                    table.c.attempts,
                    table.c.version_before,
                    table.c.version_after,
                    table.c.duration_ms,
                    table.c.error,
                ).where(table.c.run_id == run_id, table.c.dataset_id == dataset_id)
            )
        ).first()
    return RunDatasetRow(**row._mapping) if row is not None else None


async def open_dataset_ids(engine: AsyncEngine, run_id: str) -> list[str]:
    """A run's datasets that have no outcome yet."""
    async with engine.connect() as conn:
        return list(
            await conn.scalars(
                sa.select(migration_run_datasets.c.dataset_id)
                .where(
                    migration_run_datasets.c.run_id == run_id,
                    migration_run_datasets.c.status.in_(OPEN_STATUSES),
                )
                .order_by(migration_run_datasets.c.dataset_id)
            )
        )


async def close_open_row(
    engine: AsyncEngine, run_id: str, outcome: DatasetOutcome, *, update_cache: bool = True
) -> bool:
    """Record ``outcome`` only where the row has none yet; False when it already had one.

    For outcomes written on someone else's behalf (a timed-out delivery, the chord body filling
    in what never reported): a real outcome recorded first always wins.
    """
    now = utcnow()
    async with engine.begin() as conn:
        updated = await conn.execute(
            migration_run_datasets.update()
            .where(
                migration_run_datasets.c.run_id == run_id,
                migration_run_datasets.c.dataset_id == outcome.dataset_id,
                migration_run_datasets.c.status.in_(OPEN_STATUSES),
            )
            .values(**outcome_values(outcome, now))
        )
        if not updated.rowcount:
            return False
        if update_cache and outcome.error:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == outcome.dataset_id)
                .values(last_error=outcome.error)
            )
        await touch_run(conn, run_id, now)
    return True


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def fail_if_running(engine: AsyncEngine, run_id: str, error: str) -> bool:
    """Mark a run failed unless it finished meanwhile (a late chord body wins the race)."""
    async with engine.begin() as conn:
        updated = await conn.execute(
            migration_runs.update()
            .where(migration_runs.c.id == run_id, migration_runs.c.status == "running")
            .values(status="failed", error=error, finished_at=utcnow())
        )
    return bool(updated.rowcount)


async def last_finished_at(engine: AsyncEngine) -> datetime | None:
    """When the most recent run finished (None when none has)."""
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.max(migration_runs.c.finished_at)))
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregates of datetimes as text
        value = datetime.fromisoformat(value)
    return _aware(value)
