"""The parent task's step of a broker run: upgrade the control plane, record the run and choose
its datasets, all under the run lock; or record why the run could not start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import utcnow
from migrator.errors import ControlPlaneTimeoutError, RunBusyError
from migrator.locks.heartbeat import heartbeat
from migrator.locks.redis import Locks, confirm_run_lock
from migrator.relational import RelationalResult, upgrade_to_head
from migrator.runs import store
from migrator.runs.goal import goal_options, plan_goal, refuse_blocked_downgrade
from migrator.runs.request import RunRequest
from migrator.runs.rollout import stage_of
from migrator.runs.selection import select_datasets
from migrator.runs.stages import resolve_canaries, rollout_options, with_default_budget
from migrator.runs.summary import RunSummary, describe_error, log_summary
from migrator.settings import Settings
from migrator.sources import sync_for_run
from migrator.states import FINAL_STATUSES, OPEN_STATUSES, RunStatus
from migrator.vector.base import RevisionGoal

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """What the parent decided: the datasets to fan out, or a summary when the run is already
    over (relational failure, nothing to do, lost the lock to another run)."""

    run_id: str
    dataset_ids: list[str]
    summary: RunSummary | None = None
    busy_run_id: str | None = None
    stage: int = 0


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
        existing = await store.run_state(engine, request.run_id)
        if existing is not None:  # the parent was redelivered after recording the run
            return await _resume(engine, existing)
        # The chain is loaded here: a bad folder fails the run before any dataset is touched.
        goal = plan_goal(settings, request.to_revision, downgrade=request.downgrade)
        source = await sync_for_run(engine, settings)
        dataset_ids = await select_datasets(engine, settings, request, goal)
        await refuse_blocked_downgrade(engine, settings, goal, dataset_ids)
        rollout = with_default_budget(await resolve_canaries(engine, request.rollout), settings)
        stages = rollout.stages(dataset_ids)
        staging = rollout_options(rollout, rollout.budget(len(dataset_ids)), len(stages))
        staging |= source
        await _create_run(engine, request, started_at, task_id, relational, staging, goal)
        await store.add_run_datasets(engine, request.run_id, dataset_ids, stage_of(stages))
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
        summary = await store.close_run(engine, request.run_id)
        log_summary(summary)
        return RunPlan(request.run_id, [], summary)
    return RunPlan(request.run_id, stages[0])


async def _resume(engine: AsyncEngine, state: store.RunState) -> RunPlan:
    if state.status != RunStatus.RUNNING:
        return RunPlan(state.run_id, [], await store.get_run(engine, state.run_id))
    open_ids = await store.open_dataset_ids(engine, state.run_id)
    log.warning("Run %s: resuming with %d dataset(s) not yet done.", state.run_id, len(open_ids))
    if not open_ids:
        return RunPlan(state.run_id, [], await store.close_run(engine, state.run_id))
    # A staged run resumes its current stage; when all of that stage is final its body was
    # lost, so the whole stage is sent again: each delivery reports its recorded outcome.
    stage = await store.current_stage(engine, state.run_id)
    in_stage = await store.dataset_ids_in(engine, state.run_id, OPEN_STATUSES, stage)
    if not in_stage:
        in_stage = await store.dataset_ids_in(engine, state.run_id, FINAL_STATUSES, stage)
    return RunPlan(state.run_id, in_stage, stage=stage)


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
    if isinstance(exc, ControlPlaneTimeoutError):
        # The control plane did not answer: recording would wait as long again, and fail.
        # (Not any TimeoutError: the parent's soft limit is one, and then recording works.)
        log.error(
            "Run %s failed in the %s step; the run is not recorded; no dataset was touched: %s",
            request.run_id,
            step,
            error,
        )
        return _unrecorded(request, error, started_at)
    log.error(
        "Run %s failed in the %s step; no dataset was touched: %s", request.run_id, step, error
    )
    try:
        if await store.run_state(engine, request.run_id) is None:
            await _create_run(engine, request, started_at, task_id, error)
        else:
            await store.fail_run(engine, request.run_id, error)
        return await store.get_run(engine, request.run_id)
    except Exception as record_exc:  # e.g. the relational step failed before any table existed
        log.error("Run %s could not be recorded (%s).", request.run_id, type(record_exc).__name__)
        return _unrecorded(request, error, started_at)


async def _create_run(
    engine: AsyncEngine,
    request: RunRequest,
    started_at: datetime,
    task_id: str | None,
    outcome: RelationalResult | str,
    staging: dict[str, Any] | None = None,
    goal: RevisionGoal | None = None,
) -> None:
    """Record the requested run: running, from the relational step's ``outcome``; or failed
    before any dataset was touched, ``outcome`` being the error."""
    error = outcome if isinstance(outcome, str) else None
    relational = outcome if isinstance(outcome, RelationalResult) else None
    await store.create_run(
        engine,
        run_id=request.run_id,
        trigger=request.trigger,
        requested_by=request.requested_by,
        relational_before=relational.before if relational else None,
        relational_after=relational.after if relational else None,
        status=RunStatus.RUNNING if error is None else RunStatus.FAILED,
        started_at=started_at,
        celery_task_id=task_id,
        options={
            **request.options(),
            **(goal_options(goal) if goal else {}),
            **(staging or {}),
        },
        error=error,
    )


def _unrecorded(request: RunRequest, error: str, started_at: datetime) -> RunSummary:
    return RunSummary(
        run_id=request.run_id,
        trigger=request.trigger,
        status=RunStatus.FAILED,
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
        await store.fail_run(engine, run_id, error)
    finally:
        locks.run_lock().release(run_id)
    return await store.get_run(engine, run_id)
