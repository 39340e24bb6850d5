"""The in-process runner: the upstream ``run_startup_migrations()``, recorded, with no broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import DEFAULT_ENGINE_ID
from migrator.datasets import server_keys
from migrator.db import control_plane, utcnow
from migrator.locks.slots import heavy_server_key
from migrator.logging_setup import logs_when_unconfigured
from migrator.relational import upgrade_to_head
from migrator.runs import store
from migrator.runs.dataset import migrate_default_engine, migrate_registered
from migrator.runs.goal import goal_options, plan_goal, refuse_blocked_downgrade
from migrator.runs.heavy import run_heavy_datasets
from migrator.runs.progress_relay import OperationListener
from migrator.runs.rollout import Rollout, stage_of
from migrator.runs.selection import retry_selection, select_pending
from migrator.runs.stages import (
    resolve_canaries,
    rollout_options,
    stage_halt_reason,
    with_default_budget,
)
from migrator.runs.summary import DatasetOutcome, RunSummary, describe_error, log_summary
from migrator.settings import Settings, get_settings
from migrator.sources import sync_for_run
from migrator.states import RunStatus, Trigger

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, int], None]
"""Called as ``(done, total, failed)`` after each dataset."""


@logs_when_unconfigured
async def run_startup_migrations(
    *,
    trigger: Trigger | str = Trigger.API,
    requested_by: str | None = None,
    dataset_ids: Sequence[str] | None = None,
    verify: bool = False,
    to_revision: str | None = None,
    downgrade: bool = False,
    settings: Settings | None = None,
    on_progress: ProgressCallback | None = None,
    on_operation: OperationListener | None = None,
    prepare: Callable[[AsyncEngine], Awaitable[object]] | None = None,
    rollout: Rollout | None = None,
    retry_of: str | None = None,
) -> RunSummary:
    """Apply every pending schema migration: the control plane, then each vector database.

    Takes (all keyword-only, all optional):

    - ``trigger``: what to record as the run's trigger, a ``Trigger`` or its value (``api``).
    - ``requested_by``: who asked, for the run record.
    - ``dataset_ids``: migrate only these registered datasets (an unknown id is an error).
    - ``verify``: open every active dataset and read its own version instead of the cache.
    - ``to_revision``: the vector revision to reach (default: the head of VECTOR_MIGRATIONS'
      chain); with ``downgrade``, the revision to go down to (``"base"``: undo everything).
    - ``settings``: a ``Settings``; read from the environment when omitted.
    - ``on_progress``: called as ``(done, total, failed)`` after each dataset.
    - ``on_operation``: called as ``(dataset_id, OperationProgress)`` while a dataset's index
      build or backfill runs (the run record gets the same, at most every
      PROGRESS_INTERVAL_S).
    - ``prepare``: awaited with the control-plane engine once it is at head, before datasets
      are chosen (``migrator run --demo`` seeds there).
    - ``rollout``: a ``Rollout``: canary first, then waves, a failure budget
      (``MAX_FAILURES`` when it names none). A canary or wave with a dataset that did not
      succeed halts the run: the rest are recorded ``deferred`` and the run ``halted``.
    - ``retry_of``: a run id: only the datasets that failed, were deferred or never finished
      in it.

    Returns the run's ``RunSummary``: its id, status (``succeeded``, ``partial`` when some
    dataset failed or timed out, ``halted`` when a canary, a wave or the budget stopped it),
    the relational revision before and after, each dataset's outcome, counts and duration.
    The same run is recorded in the control plane.

    With an external ``DATASET_SOURCE`` the source is read first: new datasets are added,
    missing ones marked removed, refused rows listed in ``source_errors`` (the run is then
    ``partial`` at best).

    Raises ``FileNotFoundError`` when alembic.ini or the migrations folder is missing,
    ``MigrationError`` when Alembic fails, a ``RevisionError`` when the vector revision
    folder is not one clean chain or ``to_revision`` is not in it, and ``DatasetSourceError``
    when the dataset source cannot be read; in each case no dataset is
    touched, and the error
    carries ``run_id`` when the failed run could be recorded. One dataset's failure is recorded
    in the summary and never stops the others.
    """
    settings = settings or get_settings()
    trigger = Trigger(trigger)
    rollout = with_default_budget(rollout or Rollout(), settings)
    started_at = utcnow()
    started = time.monotonic()
    try:
        # The chain first: a bad folder or target stops the run before anything is touched.
        goal = plan_goal(settings, to_revision, downgrade=downgrade)
    except Exception as exc:
        await _record_early_failure(settings, trigger, requested_by, started_at, exc, "vector")
        raise
    try:
        relational = await upgrade_to_head(settings)
    except Exception as exc:
        await _record_early_failure(settings, trigger, requested_by, started_at, exc, "relational")
        raise
    async with control_plane(settings) as engine:
        if prepare is not None:
            await prepare(engine)
        try:
            source = await sync_for_run(engine, settings)
        except Exception as exc:
            await _record_early_failure(
                settings, trigger, requested_by, started_at, exc, "dataset source"
            )
            raise
        rollout = await resolve_canaries(engine, rollout)
        if not settings.enable_backend_access_control:
            pending = []
        else:
            if retry_of is not None:
                pending = await retry_selection(engine, retry_of, goal.target)
            else:
                pending = await select_pending(
                    engine, target=goal.target, dataset_ids=dataset_ids, verify=verify
                )
            try:
                await refuse_blocked_downgrade(engine, settings, goal, pending)
            except Exception as exc:
                await _record_early_failure(
                    settings, trigger, requested_by, started_at, exc, "vector"
                )
                raise
        stages = rollout.stages(pending)
        budget = rollout.budget(len(pending))
        staging = rollout_options(rollout, budget, len(stages))
        run_id = await store.create_run(
            engine,
            trigger=trigger,
            requested_by=requested_by,
            relational_before=relational.before,
            relational_after=relational.after,
            started_at=started_at,
            options={
                "verify": verify,
                "subset": dataset_ids is not None,
                "retry_of": retry_of,
                **goal_options(goal),
                **staging,
                **source,
            },
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
            await store.add_run_datasets(engine, run_id, pending, stage_of(stages))
            progress = _Progress(sum(len(ids) for ids in stages), on_progress, on_operation)
            await _migrate_stages(engine, settings, run_id, stages, staging, progress)
        else:
            await _migrate_default(engine, settings, run_id, on_progress, on_operation)
        summary = await store.close_run(engine, run_id)
    summary.duration_s = round(time.monotonic() - started, 3)
    log_summary(summary)
    return summary


async def _migrate_stages(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    stages: list[list[str]],
    staging: dict[str, Any],
    progress: _Progress,
) -> None:
    """Each stage after the last one finished; a staged run halts at a stage that did not all
    succeed (the rest recorded deferred)."""
    for number, dataset_ids in enumerate(stages):
        budget = staging["max_failures"]
        await _migrate_all(engine, settings, run_id, dataset_ids, budget, progress)
        reason = await stage_halt_reason(engine, run_id, number, staging)
        if reason is not None:
            deferred = await store.defer_pending(engine, run_id, reason)
            log.warning("Run %s halted: %s (%d deferred).", run_id, reason, deferred)
            return


class _Progress:
    """Counts outcomes across stages for the ``(done, total, failed)`` callback."""

    def __init__(
        self,
        total: int,
        callback: ProgressCallback | None,
        on_operation: OperationListener | None = None,
    ) -> None:
        self.total = total
        self.done = self.failed = 0
        self.callback = callback
        self.on_operation = on_operation

    def add(self, outcome: DatasetOutcome) -> None:
        self.done += 1
        self.failed += outcome.finished_badly
        if self.callback is not None:
            self.callback(self.done, self.total, self.failed)


async def _migrate_all(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    dataset_ids: list[str],
    budget: int | None,
    progress: _Progress,
) -> None:
    """Bounded concurrency overall and per database server; heavy datasets also by
    HEAVY_PER_SERVER_CONCURRENCY per server, taken first so a waiting heavy dataset holds no
    slot a light one could use."""
    overall = asyncio.Semaphore(settings.migration_concurrency)
    server_of = await server_keys(engine) if dataset_ids else {}
    per_server: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(settings.per_server_concurrency)
    )
    heavy = await run_heavy_datasets(engine, settings, run_id, dataset_ids)
    heavy_per_server: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(settings.heavy_per_server_concurrency)
    )

    def heavy_gate(dataset_id: str) -> AbstractAsyncContextManager[Any]:
        found = heavy.get(dataset_id)
        key = heavy_server_key(found.provider, server_of.get(dataset_id)) if found else None
        return heavy_per_server[key] if key is not None else nullcontext()

    async def one(dataset_id: str) -> None:
        async with heavy_gate(dataset_id), overall, per_server[server_of.get(dataset_id, "")]:
            outcome = await migrate_registered(
                engine,
                settings,
                run_id,
                dataset_id,
                max_failures=budget,
                on_operation=progress.on_operation,
            )
        progress.add(outcome)

    await asyncio.gather(*(one(d) for d in dataset_ids))


async def _migrate_default(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    on_progress: ProgressCallback | None,
    on_operation: OperationListener | None,
) -> DatasetOutcome:
    await store.add_run_datasets(engine, run_id, [DEFAULT_ENGINE_ID])
    outcome = await migrate_default_engine(engine, settings, run_id, on_operation)
    if on_progress is not None:
        on_progress(1, 1, int(outcome.finished_badly))
    return outcome


async def _record_early_failure(
    settings: Settings,
    trigger: Trigger,
    requested_by: str | None,
    started_at: datetime,
    exc: Exception,
    step: str,
) -> None:
    """Record the failed run when the control plane has a run table to hold it."""
    if isinstance(exc, TimeoutError):
        # The control plane did not answer: recording would wait as long again, and fail.
        log.error(
            "Relational step failed (%s); the run is not recorded; no dataset was touched.",
            describe_error(exc, settings),
        )
        return
    try:
        async with control_plane(settings) as engine:
            run_id = await store.create_run(
                engine,
                trigger=trigger,
                requested_by=requested_by,
                status=RunStatus.FAILED,
                started_at=started_at,
                error=describe_error(exc, settings),
            )
        exc.run_id = run_id  # type: ignore[attr-defined]
        log.error("Run %s failed in the %s step; no dataset was touched.", run_id, step)
    except Exception as record_exc:
        log.error(
            "%s step failed; the run could not be recorded (%s); no dataset was touched.",
            step.capitalize(),
            type(record_exc).__name__,
        )
