"""Migrate one dataset database and record the outcome. Used by the in-process runner and by
the broker subtask alike; it never raises for a dataset's own failure, it reports it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import default_engine_target, load_target
from migrator.db import Bind, reconnecting, transaction
from migrator.errors import (
    ControlPlaneTimeoutError,
    UnsupportedGoalError,
    VectorDatabaseUnreachableError,
)
from migrator.runs import store
from migrator.runs.goal import run_goal
from migrator.runs.heavy import dataset_timeout_s, heavy_datasets, keep_run_alive, with_budget
from migrator.runs.progress_relay import OperationListener, ProgressRelay
from migrator.runs.rollout import budget_reason
from migrator.runs.summary import DatasetOutcome, dataset_label, describe_error, quoted_name
from migrator.settings import Settings
from migrator.states import DatasetStatus, count_badly
from migrator.vector.base import DatasetTarget, RevisionAdapter, RevisionGoal, StepFailed
from migrator.vector.chain_config import as_revision
from migrator.vector.registry import adapter_factory
from migrator.vector.revisions.errors import IndexBuildInProgressError, RevisionApplyError
from migrator.vector.revisions.resources import OnProgress

log = logging.getLogger(__name__)

# A dataset ready to migrate: where it lives, where to take it, its heavy budget (or None).
_Started = tuple[DatasetTarget, RevisionGoal, float | None]

# Where a failure says nothing about the revision: the store could not be opened or locked.
OUTAGE_STEPS = ("open", "connect", "lock", "load")
# Failures of the way to the store, not of the migration (TimeoutError is an OSError).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    VectorDatabaseUnreachableError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    # Another server process still building the index: nothing wrong with the revision.
    IndexBuildInProgressError,
)


async def migrate_target(
    target: DatasetTarget,
    settings: Settings,
    goal: RevisionGoal | None = None,
    on_progress: OnProgress | None = None,
    *,
    budget_s: float | None = None,
) -> DatasetOutcome:
    """Open the target's adapter and bring it to ``goal`` (default: the configured chain's
    head); every failure becomes an outcome. ``on_progress`` hears how its index builds and
    backfills are doing (adapters of the revision chain only). ``budget_s`` (a heavy
    dataset's) replaces DATASET_TIMEOUT_S when it is longer, for the adapter too."""
    started = time.monotonic()
    step = "open"
    adapter = None
    settings = with_budget(settings, budget_s)
    try:
        adapter = adapter_factory(target.provider)(target, settings)
        run_migrations = getattr(adapter, "run_migrations", None)
        if run_migrations is None:
            log.warning(
                "Vector adapter %r has no run_migrations; skipping dataset %s.",
                target.provider,
                dataset_label(target.dataset_id, target.name),
            )
            return DatasetOutcome(
                target.dataset_id,
                DatasetStatus.SKIPPED,
                error="adapter has no run_migrations",
                name=target.name,
            )
        step = "migrate"
        async with asyncio.timeout(settings.dataset_timeout_s):
            if isinstance(adapter, RevisionAdapter):
                result = await adapter.run_migrations(goal, on_progress=on_progress)
            elif goal is None or goal.is_plain_upgrade:
                result = await run_migrations()  # third-party: brings itself to its head
            else:
                raise UnsupportedGoalError(target.provider)
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.SUCCEEDED,
            as_revision(result.version_before),
            as_revision(result.version_after),
            _ms_since(started),
        )
    except TimeoutError:
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.TIMED_OUT,
            duration_ms=_ms_since(started),
            error=_timeout_error(settings, budget_s),
            step=step,
        )
    except Exception as exc:  # one dataset's failure must never stop the others
        failed = exc if isinstance(exc, StepFailed) else None
        outcome = DatasetOutcome(
            target.dataset_id,
            DatasetStatus.FAILED,
            version_before=as_revision(failed.version_before) if failed else None,
            version_after=as_revision(failed.version_after) if failed else None,
            duration_ms=_ms_since(started),
            error=describe_error(exc, settings),
            step=failed.step if failed else step,
            revision_failed=revision_raised(exc, failed.step if failed else step),
        )
    finally:
        if adapter is not None:
            await _close_quietly(adapter, target)
    outcome = dataclasses.replace(outcome, name=target.name)
    log_outcome(outcome)
    return outcome


def revision_raised(exc: BaseException, step: str) -> bool:
    """True when the migration itself raised: not while opening or connecting, and not an
    outage (a connection error, a timeout), so a server outage never quarantines a fleet."""
    cause = exc.cause if isinstance(exc, StepFailed) else exc
    if isinstance(cause, RevisionApplyError):
        cause = cause.cause  # what the operation met: an outage inside a revision is one too
    return step not in OUTAGE_STEPS and not isinstance(cause, OUTAGE_ERRORS)


async def migrate_registered(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    dataset_id: str,
    *,
    max_failures: int | None = None,
    on_operation: OperationListener | None = None,
) -> DatasetOutcome:
    """Migrate a registered dataset within a run, recording start and end in the control plane.

    While it migrates, how a long operation (an index build, a backfill) is doing goes to the
    run record at most every PROGRESS_INTERVAL_S, and to ``on_operation`` at once.

    With ``max_failures`` (the run's failure budget) the dataset does not start once that many
    of the run's datasets finished badly: it is recorded ``deferred`` with the reason.

    One connection serves the whole bookkeeping: the start and the target's details in one
    transaction, the outcome in another; none is open while the dataset migrates.
    """
    if max_failures is not None:
        spent = await _budget_spent(engine, run_id, dataset_id, max_failures)
        if spent is not None:
            return spent

    async def start(bind: Bind) -> _Started | DatasetOutcome:
        async with transaction(bind) as conn:
            await store.mark_dataset_running(conn, run_id, dataset_id, None)
            try:
                target, goal = await load_target(conn, dataset_id), await run_goal(conn, run_id)
                heavy = await heavy_datasets(conn, settings, goal, [dataset_id])
                budget_s = heavy[dataset_id].budget_s if dataset_id in heavy else None
                return target, goal, budget_s
            except ControlPlaneTimeoutError:
                # The control plane stopped answering, not this dataset failing: the run
                # fails naming it (its connection is gone, nothing here can be committed).
                raise
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
            target, goal, budget_s = started
            relay = ProgressRelay(
                dataset_id,
                lambda progress: store.write_progress(conn, run_id, dataset_id, progress),
                settings.progress_interval_s,
                on_operation,
            )
            try:
                if budget_s is None:
                    outcome = await migrate_target(target, settings, goal, relay.report)
                else:
                    log.info(
                        "dataset=%s name=%s is heavy: budget %gs instead of DATASET_TIMEOUT_S=%gs.",
                        dataset_id,
                        quoted_name(target.name),
                        dataset_timeout_s(settings, budget_s),
                        settings.dataset_timeout_s,
                    )
                    async with keep_run_alive(engine, settings, run_id):
                        outcome = await migrate_target(
                            target, settings, goal, relay.report, budget_s=budget_s
                        )
            finally:
                await relay.close()
        quarantined = await reconnecting(
            engine,
            conn,
            lambda bind: store.mark_dataset_done(
                bind, run_id, outcome, quarantine_after_runs=settings.quarantine_after_runs
            ),
        )
    if quarantined:
        log.warning(
            "dataset=%s name=%s quarantined: its migration failed %d run(s) in a row; left out "
            "of runs until `migrator datasets release %s`",
            dataset_id,
            quoted_name(outcome.name),
            settings.quarantine_after_runs,
            dataset_id,
        )
    return outcome


async def _budget_spent(
    engine: AsyncEngine, run_id: str, dataset_id: str, max_failures: int
) -> DatasetOutcome | None:
    """The deferred outcome when the run's failure budget is spent; None while it is not."""
    failed = count_badly(await store.dataset_counts(engine, run_id))
    if failed < max_failures:
        return None
    reason = budget_reason(failed, max_failures)
    if not await store.defer_pending(engine, run_id, reason, dataset_id=dataset_id):
        return None  # already started or final: an earlier delivery decides
    outcome = DatasetOutcome(dataset_id, DatasetStatus.DEFERRED, error=reason)
    log_outcome(outcome)
    return outcome


async def migrate_default_engine(
    engine: AsyncEngine,
    settings: Settings,
    run_id: str,
    on_operation: OperationListener | None = None,
) -> DatasetOutcome:
    """Migrate the single default vector engine (backend access control off) within a run.

    Its row is in the run like any dataset's; it has no registry entry, so no cache to refresh.
    """
    target = default_engine_target(settings)
    await store.mark_dataset_running(engine, run_id, target.dataset_id, None)
    relay = ProgressRelay(
        target.dataset_id,
        lambda progress: store.write_progress(engine, run_id, target.dataset_id, progress),
        settings.progress_interval_s,
        on_operation,
    )
    try:
        goal = await run_goal(engine, run_id)
        outcome = await migrate_target(target, settings, goal, relay.report)
    finally:
        await relay.close()
    await store.mark_dataset_done(engine, run_id, outcome, update_dataset_cache=False)
    return outcome


def _load_failed(exc: Exception, dataset_id: str, settings: Settings) -> DatasetOutcome:
    outcome = DatasetOutcome(
        dataset_id, DatasetStatus.FAILED, error=describe_error(exc, settings), step="load"
    )
    log_outcome(outcome)
    return outcome


def log_outcome(outcome: DatasetOutcome) -> None:
    """One greppable line per dataset: id, name, from->to, duration, error class."""
    name = quoted_name(outcome.name)
    if outcome.status == DatasetStatus.SUCCEEDED:
        log.info(
            "dataset=%s name=%s status=succeeded version=%s->%s duration_ms=%d",
            outcome.dataset_id,
            name,
            outcome.version_before,
            outcome.version_after,
            outcome.duration_ms,
        )
    elif outcome.status in (DatasetStatus.SKIPPED, DatasetStatus.DEFERRED):
        log.info(
            "dataset=%s name=%s status=%s reason=%s",
            outcome.dataset_id,
            name,
            outcome.status,
            outcome.error,
        )
    else:
        log.error(
            "dataset=%s name=%s status=%s step=%s duration_ms=%d error=%s",
            outcome.dataset_id,
            name,
            outcome.status,
            outcome.step,
            outcome.duration_ms,
            outcome.error,
        )


async def _close_quietly(adapter: object, target: DatasetTarget) -> None:
    close = getattr(adapter, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.warning(
            "dataset=%s name=%s closing its adapter failed",
            target.dataset_id,
            quoted_name(target.name),
            exc_info=True,
        )


def _timeout_error(settings: Settings, budget_s: float | None) -> str:
    limit_s = settings.dataset_timeout_s  # already grown to the budget for a heavy dataset
    if budget_s is None:
        return f"TimeoutError: exceeded dataset_timeout_s={limit_s:g}"
    return f"TimeoutError: exceeded the heavy budget: budget_s={budget_s:g} (limit {limit_s:g}s)"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
