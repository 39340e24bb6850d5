"""One dataset's subtask of a broker run: migrate it under its subtask lock and a slot of its
server, or record why it could not be; every delivery reports the outcome that was recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable
from contextlib import nullcontext

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import DATASET_LOCK_POLL_S, DEFAULT_ENGINE_ID, SERVER_SLOT_POLL_S
from migrator.datasets import dataset_name
from migrator.db import Bind, reconnecting
from migrator.errors import AttemptsExhaustedError, DatasetBusyError, RunNotFoundError
from migrator.locks.heartbeat import heartbeat
from migrator.locks.redis import LockRecord, Locks, acquire_waiting, release_quietly
from migrator.locks.remote_store import holding_cross_machine
from migrator.locks.slots import heavy_slot, slot_on
from migrator.runs import store
from migrator.runs.dataset import log_outcome, migrate_default_engine, migrate_registered
from migrator.runs.heavy import run_heavy_datasets
from migrator.runs.summary import DatasetOutcome, describe_error
from migrator.settings import Settings
from migrator.states import FINAL_STATUSES, DatasetStatus

log = logging.getLogger(__name__)


async def migrate_one(
    engine: AsyncEngine, settings: Settings, locks: Locks, run_id: str, dataset_id: str
) -> DatasetOutcome:
    """Migrate one dataset of a run under its subtask lock; the outcome is recorded.

    Every delivery of a (run, dataset) reports its outcome, once it is recorded: a second copy
    (Redis redelivery, or a parent resumed after it died mid-fan-out sent the dataset again in
    a new chord) waits for the live one and reports what it recorded. So each chord of the run
    completes; Celery counts a task id once within a chord.
    """
    lock = locks.subtask_lock(dataset_id)
    mine = LockRecord.new(run_id)
    # A delivery killed while holding the lock stops extending it: it lapses within one TTL.
    wait_s = settings.dataset_lock_ttl_s + 2 * DATASET_LOCK_POLL_S
    announced = False

    def read(bind: Bind) -> Awaitable[store.DeliveryReads]:
        return store.delivery_reads(bind, run_id, dataset_id)

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
        # One heartbeat for everything this delivery holds: its subtask lock, the run lock
        # and, once taken, one of PER_SERVER_CONCURRENCY slots of the dataset's server.
        with heartbeat([(lock, mine.token), (locks.run_lock(), run_id)]) as beat:
            # One control-plane round trip for what the delivery reads before it migrates.
            reads = await reconnecting(engine, engine, read)
            # A heavy dataset first takes one of HEAVY_PER_SERVER_CONCURRENCY heavy slots.
            heavy = await run_heavy_datasets(engine, settings, run_id, [dataset_id])
            capped = (
                heavy_slot(engine, settings, locks.client, dataset_id, heavy[dataset_id], beat)
                if dataset_id in heavy
                else nullcontext()
            )
            server = slot_on(settings, locks.client, reads.server_key, dataset_id, beat)
            async with capped, server as slot:
                if dataset_id in heavy or (
                    slot is not None and slot.waited_s >= SERVER_SLOT_POLL_S
                ):
                    # The run may have ended while this delivery queued for its slots.
                    reads = await reconnecting(engine, engine, read)
                # The subtask lock works across machines: a remote LanceDB dataset needs no other
                # lock on a SQLite control plane (migrator.locks.remote_store).
                with holding_cross_machine(dataset_id):
                    return await _migrate_locked(engine, settings, run_id, dataset_id, reads)
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
    return await _close_failed(engine, settings, run_id, dataset_id, busy, step="lock")


async def _close_failed(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    dataset_id: str,
    exc: BaseException,
    *,
    step: str | None,
) -> DatasetOutcome:
    """Record ``exc`` as the dataset's failure unless an outcome landed first; logged."""
    outcome = await _named(
        engine,
        DatasetOutcome(
            dataset_id, DatasetStatus.FAILED, error=describe_error(exc, settings), step=step
        ),
    )
    await store.close_open_row(engine, run_id, outcome)
    log_outcome(outcome)
    return outcome


async def _migrate_locked(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    dataset_id: str,
    reads: store.DeliveryReads,
) -> DatasetOutcome:
    row = reads.row
    if row is None:
        error = RunNotFoundError(f"dataset {dataset_id} is not part of run {run_id}")
        log.error("Subtask refused: %s.", error)
        return DatasetOutcome(
            dataset_id, DatasetStatus.FAILED, error=describe_error(error, settings)
        )
    if row.outcome.status in FINAL_STATUSES:
        log.info(
            "Run %s dataset=%s: already recorded %s by an earlier delivery; reporting that.",
            run_id,
            dataset_id,
            row.outcome.status,
        )
        return row.outcome
    if row.attempts >= settings.dataset_max_attempts:
        exhausted = AttemptsExhaustedError(dataset_id, row.attempts)
        return await _close_failed(engine, settings, run_id, dataset_id, exhausted, step="deliver")
    if row.attempts:
        log.warning(
            "Run %s dataset=%s: attempt %d; the earlier one never finished (worker lost).",
            run_id,
            dataset_id,
            row.attempts + 1,
        )
    if dataset_id == DEFAULT_ENGINE_ID and not settings.enable_backend_access_control:
        return await migrate_default_engine(engine, settings, run_id)
    budget = reads.options.get("max_failures")
    return await migrate_registered(
        engine,
        settings,
        run_id,
        dataset_id,
        max_failures=int(budget) if budget is not None else None,
    )


async def record_timed_out(
    engine: AsyncEngine, run_id: str, dataset_id: str, duration_ms: int, reason: str
) -> DatasetOutcome:
    """Record a dataset cut off at its time limit, unless its real outcome landed first."""
    outcome = await _named(
        engine,
        DatasetOutcome(
            dataset_id,
            DatasetStatus.TIMED_OUT,
            duration_ms=duration_ms,
            error=reason,
            step="migrate",
        ),
    )
    if await store.close_open_row(engine, run_id, outcome):
        log_outcome(outcome)
        return outcome
    row = await reconnecting(
        engine, engine, lambda bind: store.get_run_dataset(bind, run_id, dataset_id)
    )
    status = row.outcome.status if row else DatasetStatus.TIMED_OUT
    return DatasetOutcome(dataset_id, status, duration_ms=duration_ms)


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
    outcome = DatasetOutcome(dataset_id, DatasetStatus.FAILED, error=describe_error(exc, settings))
    try:
        await store.close_open_row(engine, run_id, outcome)
    except Exception as record_exc:
        log.error(
            "Run %s dataset=%s: outcome not recorded (%s); the chord body will record it.",
            run_id,
            dataset_id,
            type(record_exc).__name__,
        )
    log_outcome(outcome)
    return outcome
