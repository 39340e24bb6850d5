"""The chord body of a broker run and its errback: finish the run from its own records (never
from the message), log, and release the run lock."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.errors import NoOutcomeError
from migrator.locks.redis import Locks
from migrator.runs import finish_rules, store
from migrator.runs.summary import (
    DatasetOutcome,
    RunSummary,
    describe_error,
    log_summary,
)
from migrator.settings import Settings
from migrator.states import DatasetStatus, RunStatus
from migrator.urls import escape_controls

log = logging.getLogger(__name__)


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
    if state.status != RunStatus.RUNNING:
        return await store.get_run(engine, run_id)  # already finished: nothing to redo
    if results is not None:
        await finish_rules.require_all_final(engine, run_id)
    else:
        await finish_rules.require_silent(engine, locks, state)
        reason = "its subtask failed outside the migrator: hard time limit or lost worker"
        await _fill_in_missing(engine, settings, run_id, reason)
    summary = await store.close_run(engine, run_id)
    log_summary(summary)
    for outcome in summary.datasets:
        if outcome.finished_badly:
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
    for dataset_id in await store.open_dataset_ids(engine, run_id):
        missing = NoOutcomeError(dataset_id, reason)
        outcome = DatasetOutcome(
            dataset_id, DatasetStatus.FAILED, error=describe_error(missing, settings)
        )
        await store.close_open_row(engine, run_id, outcome)
