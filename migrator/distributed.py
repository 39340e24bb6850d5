"""The steps of a broker run, without Celery: what a trigger, the parent task, each dataset
subtask and the chord body do. ``tasks/`` calls one function here per task.

The run lock (``migrator.runlock``) makes runs single across every trigger; each dataset lock
makes one dataset's migration single across workers. Every outcome lands in
``migration_run_datasets`` as it happens, so ``migrator status RUN_ID`` shows progress.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator import finish_rules, records
from migrator.constants import (
    DATASET_LOCK_POLL_S,
    DEFAULT_ENGINE_ID,
    RESULT_ERROR_CHARS,
    RESULT_FAILED_IDS_MAX,
    RESULT_MAX_BYTES,
    RESULT_NAME_CHARS,
    RUN_CLAIM_TRIES,
)
from migrator.dataset_job import describe_error, log_outcome, migrate_dataset, migrate_target
from migrator.datasets import dataset_name, default_engine_target
from migrator.db import reconnecting
from migrator.errors import (
    AttemptsExhaustedError,
    DatasetBusyError,
    NoOutcomeError,
    RunBusyError,
    RunNotFoundError,
    StaleRunError,
)
from migrator.models import DATASET_RUN_STATUSES
from migrator.plan import (
    RunRequest,
    RunState,
    close_open_row,
    fail_if_running,
    get_run_dataset,
    open_dataset_ids,
    run_state,
    running_runs,
    select_datasets,
)
from migrator.records import FINAL_DATASET_STATUSES, utcnow
from migrator.relational import upgrade_to_head
from migrator.runlock import (
    LockRecord,
    Locks,
    RedisLock,
    acquire_waiting,
    confirm_run_lock,
    heartbeat,
    release_quietly,
)
from migrator.runner import log_summary
from migrator.settings import Settings
from migrator.slots import server_slot
from migrator.summary import DatasetOutcome, RunSummary, cut_name
from migrator.urls import escape_controls

log = logging.getLogger(__name__)

_OUTCOME_FIELDS = {f.name for f in fields(DatasetOutcome)}


# --- triggers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A trigger's answer: the run it started, or the run in progress it attaches to."""

    run_id: str
    started: bool
    trigger: str | None = None


async def claim_run(
    locks: Locks, settings: Settings, run_id: str, trigger: str, engine: AsyncEngine | None
) -> Claim:
    """Take the run lock for ``run_id``, or name the run that holds it.

    A holder whose run is over, or stale, is cleared first (``engine`` given): a crashed chord
    body or a lost worker never blocks triggers for longer than RUN_STALE_AFTER_S.
    """
    lock = locks.run_lock()
    for _ in range(RUN_CLAIM_TRIES):
        if lock.acquire(LockRecord.new(run_id, token=run_id, trigger=trigger)):
            return Claim(run_id, True, trigger)
        holder = lock.holder()
        if holder is None:  # released between our SET NX and GET
            continue
        if engine is not None and await release_if_over(engine, settings, lock, holder):
            continue
        return Claim(holder.run_id, False, holder.trigger)
    raise RunBusyError(None)


async def release_if_over(
    engine: AsyncEngine, settings: Settings, lock: RedisLock, holder: LockRecord
) -> bool:
    """Free the run lock when the run holding it has finished or gone stale; True when freed."""
    try:
        state = await run_state(engine, holder.run_id)
    except (DBAPIError, OSError):
        return False  # unreachable or not migrated yet: nothing to judge the holder by
    if state is None:
        return False  # not recorded yet: its parent is queued or upgrading the control plane
    if state.status == "running":
        if state.idle_s() <= settings.run_stale_after_s:
            return False
        await mark_stale(engine, settings, state)
    released = lock.release(holder.token)
    if released:
        log.warning(
            "Run lock of run %s (%s) cleared: the run is over.", holder.run_id, state.status
        )
    return released


async def mark_stale(engine: AsyncEngine, settings: Settings, state: RunState) -> bool:
    error = describe_error(StaleRunError(state.run_id, state.idle_s()), settings)
    marked = await fail_if_running(engine, state.run_id, error)
    if marked:
        log.error("Run %s marked failed: %s", state.run_id, error)
    return marked


async def recover_stale_runs(engine: AsyncEngine, settings: Settings, locks: Locks) -> list[str]:
    """Fail every running run idle for RUN_STALE_AFTER_S and free the run lock if one holds it."""
    now = utcnow()
    stale = [s for s in await running_runs(engine) if s.idle_s(now) > settings.run_stale_after_s]
    lock = locks.run_lock()
    marked = []
    for state in stale:
        if await mark_stale(engine, settings, state):
            marked.append(state.run_id)
        lock.release(state.run_id)
    return marked


# --- the parent task --------------------------------------------------------------------------


@dataclass
class RunPlan:
    """What the parent decided: the datasets to fan out, or a summary when the run is already
    over (relational failure, nothing to do, lost the lock to another run)."""

    run_id: str
    dataset_ids: list[str]
    summary: RunSummary | None = None
    busy_run_id: str | None = None


async def start_run(
    engine: AsyncEngine, settings: Settings, locks: Locks, request: RunRequest, task_id: str
) -> RunPlan:
    """Upgrade the control plane, record the run and choose its datasets, holding the run lock.

    The lock is released on every path that sends no subtask; otherwise the chord body does.
    """
    lock = locks.run_lock()
    other = confirm_run_lock(lock, request.run_id, request.trigger)
    if other is not None:
        log.error("Run %s not started: run %s holds the run lock.", request.run_id, other.run_id)
        busy = RunBusyError(other.run_id)
        summary = _unrecorded(request, describe_error(busy, settings), utcnow())
        return RunPlan(request.run_id, [], summary, busy_run_id=other.run_id)
    try:
        with heartbeat([(lock, request.run_id)]):
            plan = await _plan_run(engine, settings, request, task_id)
    except BaseException:  # cancelled at the soft time limit, or worse: never strand the lock
        lock.release(request.run_id)
        raise
    if plan.summary is not None:
        lock.release(request.run_id)
    return plan


async def _plan_run(
    engine: AsyncEngine, settings: Settings, request: RunRequest, task_id: str
) -> RunPlan:
    started_at = utcnow()
    try:
        relational = await upgrade_to_head(settings)
    except Exception as exc:
        summary = await record_failed_run(
            engine, settings, request, started_at, exc, step="relational", task_id=task_id
        )
        return RunPlan(request.run_id, [], summary)
    try:
        existing = await run_state(engine, request.run_id)
        if existing is not None:  # the parent was redelivered after recording the run
            return await _resume(engine, existing)
        dataset_ids = await select_datasets(engine, settings, request)
        await records.create_run(
            engine,
            run_id=request.run_id,
            trigger=request.trigger,
            requested_by=request.requested_by,
            relational_before=relational.before,
            relational_after=relational.after,
            started_at=started_at,
            celery_task_id=task_id,
            options=request.options(),
        )
        await records.add_run_datasets(engine, request.run_id, dataset_ids)
    except Exception as exc:
        summary = await record_failed_run(
            engine, settings, request, started_at, exc, step="planning", task_id=task_id
        )
        return RunPlan(request.run_id, [], summary)
    log.info(
        "Run %s (%s): control plane %s -> %s; %d dataset database(s) to migrate.",
        request.run_id,
        request.trigger,
        relational.before,
        relational.after,
        len(dataset_ids),
    )
    if not dataset_ids:
        summary = await records.finish_run(engine, request.run_id)
        log_summary(summary)
        return RunPlan(request.run_id, [], summary)
    return RunPlan(request.run_id, dataset_ids)


async def _resume(engine: AsyncEngine, state: RunState) -> RunPlan:
    if state.status != "running":
        return RunPlan(state.run_id, [], await records.get_run(engine, state.run_id))
    open_ids = await open_dataset_ids(engine, state.run_id)
    log.warning("Run %s: resuming with %d dataset(s) not yet done.", state.run_id, len(open_ids))
    if not open_ids:
        return RunPlan(state.run_id, [], await records.finish_run(engine, state.run_id))
    return RunPlan(state.run_id, open_ids)


async def record_failed_run(
    engine: AsyncEngine,
    settings: Settings,
    request: RunRequest,
    started_at: datetime,
    exc: BaseException,
    *,
    step: str,
    task_id: str | None,
) -> RunSummary:
    """Record the run as failed before any dataset was touched; log why, once, at ERROR."""
    error = describe_error(exc, settings)
    log.error(
        "Run %s failed in the %s step; no dataset was touched: %s", request.run_id, step, error
    )
    try:
        if await run_state(engine, request.run_id) is None:
            await records.create_run(
                engine,
                run_id=request.run_id,
                trigger=request.trigger,
                requested_by=request.requested_by,
                status="failed",
                started_at=started_at,
                celery_task_id=task_id,
                options=request.options(),
                error=error,
            )
        else:
            await records.fail_run(engine, request.run_id, error)
        return await records.get_run(engine, request.run_id)
    except Exception as record_exc:  # e.g. the relational step failed before any table existed
        log.error("Run %s could not be recorded (%s).", request.run_id, type(record_exc).__name__)
        return _unrecorded(request, error, started_at)


def _unrecorded(request: RunRequest, error: str, started_at: datetime) -> RunSummary:
    return RunSummary(
        run_id=request.run_id,
        trigger=request.trigger,
        status="failed",
        relational_before=None,
        relational_after=None,
        counts={"total": 0},
        started_at=started_at.isoformat(),
        finished_at=utcnow().isoformat(),
        error=error,
    )


async def abandon_run(
    engine: AsyncEngine, settings: Settings, locks: Locks, run_id: str, exc: BaseException
) -> RunSummary:
    """The chord could not be sent: the run fails, its datasets stay pending for a retry."""
    error = describe_error(exc, settings)
    log.error("Run %s: its subtasks could not be sent: %s", run_id, error)
    try:
        await records.fail_run(engine, run_id, error)
    finally:
        locks.run_lock().release(run_id)
    return await records.get_run(engine, run_id)


# --- the dataset subtask ----------------------------------------------------------------------


async def migrate_one(
    engine: AsyncEngine, settings: Settings, locks: Locks, run_id: str, dataset_id: str
) -> DatasetOutcome:
    """Migrate one dataset of a run under its dataset lock; the outcome is recorded.

    Every delivery of a (run, dataset) reports its outcome, once it is recorded: a second copy
    (Redis redelivery, or a parent resumed after it died mid-fan-out sent the dataset again in
    a new chord) waits for the live one and reports what it recorded. So each chord of the run
    completes; Celery counts a task id once within a chord.
    """
    lock = locks.dataset_lock(dataset_id)
    mine = LockRecord.new(run_id)
    # A delivery killed while holding the lock stops extending it: it lapses within one TTL.
    wait_s = settings.dataset_lock_ttl_s + 2 * DATASET_LOCK_POLL_S
    announced = False
    while not await acquire_waiting(lock, mine, wait_s):
        holder = lock.holder()
        if holder is not None and holder.run_id != run_id:
            return await _locked_out(engine, settings, holder, run_id, dataset_id, wait_s)
        if holder is not None and not announced:
            log.info(
                "Run %s dataset=%s: another delivery of this run is migrating it; waiting for "
                "its outcome.",
                run_id,
                dataset_id,
            )
            announced = True
    try:
        with heartbeat([(lock, mine.token), (locks.run_lock(), run_id)]):
            # One of PER_SERVER_CONCURRENCY slots of the dataset's server, across all workers.
            async with server_slot(engine, settings, locks.client, dataset_id):
                return await _migrate_locked(engine, settings, run_id, dataset_id)
    finally:
        release_quietly(lock, mine.token)  # Redis down now must not undo a recorded outcome


async def _locked_out(
    engine: AsyncEngine,
    settings: Settings,
    holder: LockRecord,
    run_id: str,
    dataset_id: str,
    waited_s: float,
) -> DatasetOutcome:
    busy = DatasetBusyError(dataset_id, holder.run_id, waited_s)
    outcome = await _named(
        engine,
        DatasetOutcome(dataset_id, "failed", error=describe_error(busy, settings), step="lock"),
    )
    await close_open_row(engine, run_id, outcome)
    log_outcome(outcome)
    return outcome


async def _migrate_locked(
    engine: AsyncEngine, settings: Settings, run_id: str, dataset_id: str
) -> DatasetOutcome:
    row = await reconnecting(engine, engine, lambda bind: get_run_dataset(bind, run_id, dataset_id))
    if row is None:
        error = RunNotFoundError(f"dataset {dataset_id} is not part of run {run_id}")
        log.error("Subtask refused: %s.", error)
        return DatasetOutcome(dataset_id, "failed", error=describe_error(error, settings))
    if row.status in FINAL_DATASET_STATUSES:
        log.info(
            "Run %s dataset=%s: already recorded %s by an earlier delivery; reporting that.",
            run_id,
            dataset_id,
            row.status,
        )
        return row.outcome(dataset_id)
    if row.attempts >= settings.dataset_max_attempts:
        exhausted = AttemptsExhaustedError(dataset_id, row.attempts)
        outcome = await _named(
            engine,
            DatasetOutcome(
                dataset_id, "failed", error=describe_error(exhausted, settings), step="deliver"
            ),
        )
        await close_open_row(engine, run_id, outcome)
        log_outcome(outcome)
        return outcome
    if row.attempts:
        log.warning(
            "Run %s dataset=%s: attempt %d; the earlier one never finished (worker lost).",
            run_id,
            dataset_id,
            row.attempts + 1,
        )
    if dataset_id == DEFAULT_ENGINE_ID and not settings.enable_backend_access_control:
        return await _migrate_default_engine(engine, settings, run_id)
    return await migrate_dataset(engine, settings, run_id, dataset_id)


async def _migrate_default_engine(
    engine: AsyncEngine, settings: Settings, run_id: str
) -> DatasetOutcome:
    target = default_engine_target(settings)
    await records.mark_dataset_running(engine, run_id, target.dataset_id, None)
    outcome = await migrate_target(target, settings)
    await records.mark_dataset_done(engine, run_id, outcome, update_cache=False)
    return outcome


async def record_timed_out(
    engine: AsyncEngine, run_id: str, dataset_id: str, duration_ms: int, reason: str
) -> DatasetOutcome:
    """Record a dataset cut off at its time limit, unless its real outcome landed first."""
    outcome = await _named(
        engine,
        DatasetOutcome(
            dataset_id, "timed_out", duration_ms=duration_ms, error=reason, step="migrate"
        ),
    )
    if await close_open_row(engine, run_id, outcome):
        log_outcome(outcome)
        return outcome
    row = await reconnecting(engine, engine, lambda bind: get_run_dataset(bind, run_id, dataset_id))
    return DatasetOutcome(dataset_id, row.status if row else "timed_out", duration_ms=duration_ms)


async def _named(engine: AsyncEngine, outcome: DatasetOutcome) -> DatasetOutcome:
    """The outcome with its dataset's name, for the log line and the result; without it when
    the name cannot be read (the outcome matters more than its label)."""
    try:
        name = await dataset_name(engine, outcome.dataset_id)
    except Exception:
        log.debug("dataset=%s name unreadable", outcome.dataset_id, exc_info=True)
        return outcome
    return dataclasses.replace(outcome, name=name)


async def record_crash(
    engine: AsyncEngine, settings: Settings, run_id: str, dataset_id: str, exc: BaseException
) -> DatasetOutcome:
    """A failure outside the dataset's own migration (control plane or Redis down): recorded
    when possible; the outcome is returned either way so the chord body still runs."""
    outcome = DatasetOutcome(dataset_id, "failed", error=describe_error(exc, settings))
    try:
        await close_open_row(engine, run_id, outcome)
    except Exception as record_exc:
        log.error(
            "Run %s dataset=%s: outcome not recorded (%s); the chord body will record it.",
            run_id,
            dataset_id,
            type(record_exc).__name__,
        )
    log_outcome(outcome)
    return outcome


# --- the chord body ---------------------------------------------------------------------------


async def finish(
    engine: AsyncEngine,
    settings: Settings,
    locks: Locks,
    run_id: str,
    results: Sequence[Any] | None,
) -> RunSummary:
    """Finish the run from its records: record the final status, log, unlock.

    ``results`` (the chord body's, None for the errback) are never trusted: the body refuses
    while any dataset of the run has no recorded outcome; the errback fills those in as failed
    once their subtasks can no longer report (``finish_rules``).
    """
    run_id = finish_rules.checked_run_id(run_id)
    state = await finish_rules.known_run(engine, run_id)
    if state.status != "running":
        return await records.get_run(engine, run_id)  # already finished: nothing to redo
    if results is not None:
        await finish_rules.require_all_final(engine, run_id)
    else:
        await finish_rules.require_silent(engine, locks, state)
        reason = "its subtask failed outside the migrator: hard time limit or lost worker"
        await _fill_in_missing(engine, settings, run_id, reason)
    summary = await records.finish_run(engine, run_id)
    log_summary(summary)
    for outcome in summary.datasets:
        if outcome.status in ("failed", "timed_out"):
            log.error(
                "Run %s: dataset=%s (%s) status=%s error=%s",
                run_id,
                outcome.dataset_id,
                escape_controls(outcome.name or "?"),
                outcome.status,
                outcome.error,
            )
    locks.run_lock().release(run_id)
    return summary


async def _fill_in_missing(
    engine: AsyncEngine, settings: Settings, run_id: str, reason: str
) -> None:
    for dataset_id in await open_dataset_ids(engine, run_id):
        missing = NoOutcomeError(dataset_id, reason)
        outcome = DatasetOutcome(dataset_id, "failed", error=describe_error(missing, settings))
        await close_open_row(engine, run_id, outcome)


def outcome_from_result(result: dict[str, Any]) -> DatasetOutcome | None:
    values = {k: v for k, v in result.items() if k in _OUTCOME_FIELDS}
    if values.get("status") not in DATASET_RUN_STATUSES:
        return None
    try:
        return DatasetOutcome(**values)
    except TypeError:
        return None


# --- results ----------------------------------------------------------------------------------


def summary_result(summary: RunSummary, *, busy_run_id: str | None = None) -> dict[str, Any]:
    """A run summary as a task result: JSON, secret-free and under 1 KB at any run size.

    Counts and the first failed dataset ids only; callers read the outcomes themselves from the
    control plane, which holds every one.
    """
    data = summary.to_dict(datasets="failed")
    failed = [d for d in summary.datasets if d.status in ("failed", "timed_out")]
    data.pop("datasets")
    data["datasets"] = []
    data["failed_ids"] = [d.dataset_id for d in failed[:RESULT_FAILED_IDS_MAX]]
    if len(failed) > RESULT_FAILED_IDS_MAX:
        data["failed_ids_not_shown"] = len(failed) - RESULT_FAILED_IDS_MAX
    if data.get("error") and len(data["error"]) > RESULT_ERROR_CHARS:
        data["error"] = data["error"][: RESULT_ERROR_CHARS - 3] + "..."
    if busy_run_id is not None:
        data["busy_run_id"] = busy_run_id
    data["failed_names"] = {
        d.dataset_id: cut_name(d.name, RESULT_NAME_CHARS)
        for d in failed[:RESULT_FAILED_IDS_MAX]
        if d.name is not None
    }
    # Names are what a person reads, ids what a program needs: names give way to the bound.
    while data["failed_names"] and len(json.dumps(data)) >= RESULT_MAX_BYTES:
        data["failed_names"].popitem()
    return data


def summary_from_result(data: dict[str, Any]) -> RunSummary:
    outcomes = [outcome_from_result(d) for d in data.get("datasets", [])]
    return RunSummary(
        run_id=data["run_id"],
        trigger=data.get("trigger", "?"),
        status=data.get("status", "failed"),
        relational_before=data.get("relational_before"),
        relational_after=data.get("relational_after"),
        counts=dict(data.get("counts") or {}),
        datasets=[o for o in outcomes if o is not None],
        duration_s=float(data.get("duration_s") or 0.0),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        error=data.get("error"),
    )
