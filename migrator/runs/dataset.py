"""Migrate one dataset database and record the outcome. Used by the in-process runner and by
the broker subtask alike; it never raises for a dataset's own failure, it reports it."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import default_engine_target, load_target
from migrator.db import Bind, reconnecting, transaction
from migrator.runs import store
from migrator.runs.summary import DatasetOutcome, describe_error, log_outcome
from migrator.settings import Settings
from migrator.states import DatasetStatus
from migrator.vector.base import DatasetTarget, StepFailed
from migrator.vector.registry import adapter_factory

log = logging.getLogger(__name__)


async def migrate_target(target: DatasetTarget, settings: Settings) -> DatasetOutcome:
    """Open the target's adapter and bring it to head; every failure becomes an outcome."""
    started = time.monotonic()
    step = "open"
    adapter = None
    try:
        adapter = adapter_factory(target.provider)(target, settings)
        run_migrations = getattr(adapter, "run_migrations", None)
        if run_migrations is None:
            log.warning(
                "Vector adapter %r has no run_migrations; skipping dataset %s.",
                target.provider,
                target.dataset_id,
            )
            return DatasetOutcome(
                target.dataset_id, DatasetStatus.SKIPPED, error="adapter has no run_migrations"
            )
        step = "migrate"
        async with asyncio.timeout(settings.dataset_timeout_s):
            result = await run_migrations()
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.SUCCEEDED,
            result.version_before,
            result.version_after,
            _ms_since(started),
        )
    except TimeoutError:
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.TIMED_OUT,
            duration_ms=_ms_since(started),
            error=f"TimeoutError: exceeded dataset_timeout_s={settings.dataset_timeout_s:g}",
            step=step,
        )
    except Exception as exc:  # one dataset's failure must never stop the others
        failed = exc if isinstance(exc, StepFailed) else None
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.FAILED,
            version_before=failed.version_before if failed else None,
            version_after=failed.version_after if failed else None,
            duration_ms=_ms_since(started),
            error=describe_error(exc, settings),
            step=failed.step if failed else step,
        )
    finally:
        if adapter is not None:
            await _close_quietly(adapter, target)
    log_outcome(outcome)
    return outcome


async def migrate_registered(
    engine: AsyncEngine, settings: Settings, run_id: str, dataset_id: str
) -> DatasetOutcome:
    """Migrate a registered dataset within a run, recording start and end in the control plane.

    One connection serves the whole bookkeeping: the start and the target's details in one
    transaction, the outcome in another; none is open while the dataset migrates.
    """

    async def start(bind: Bind) -> DatasetTarget | DatasetOutcome:
        async with transaction(bind) as conn:
            await store.mark_dataset_running(conn, run_id, dataset_id, None)
            try:
                return await load_target(conn, dataset_id)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise  # the connection, not the dataset: tried again on a new one
                return _load_failed(exc, dataset_id, settings)
            except Exception as exc:
                return _load_failed(exc, dataset_id, settings)

    async with engine.connect() as conn:
        # The control plane may drop this connection at any moment (a restart, a failover):
        # each transaction is tried again on a new one, so a migrated dataset is never
        # recorded failed for it.
        started = await reconnecting(engine, conn, start)
        if isinstance(started, DatasetOutcome):
            outcome = started
        else:
            outcome = await migrate_target(started, settings)
        await reconnecting(
            engine, conn, lambda bind: store.mark_dataset_done(bind, run_id, outcome)
        )
    return outcome


async def migrate_default_engine(
    engine: AsyncEngine, settings: Settings, run_id: str
) -> DatasetOutcome:
    """Migrate the single default vector engine (backend access control off) within a run.

    Its row is in the run like any dataset's; it has no registry entry, so no cache to refresh.
    """
    target = default_engine_target(settings)
    await store.mark_dataset_running(engine, run_id, target.dataset_id, None)
    outcome = await migrate_target(target, settings)
    await store.mark_dataset_done(engine, run_id, outcome, update_dataset_cache=False)
    return outcome


def _load_failed(exc: Exception, dataset_id: str, settings: Settings) -> DatasetOutcome:
    outcome = DatasetOutcome(
        dataset_id, DatasetStatus.FAILED, error=describe_error(exc, settings), step="load"
    )
    log_outcome(outcome)
    return outcome


async def _close_quietly(adapter: object, target: DatasetTarget) -> None:
    close = getattr(adapter, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.warning("dataset=%s closing its adapter failed", target.dataset_id, exc_info=True)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
