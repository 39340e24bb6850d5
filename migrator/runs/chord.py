"""The chord body of a broker run: fill in what never reported, record the final status, log,
and release the run lock."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.errors import NoOutcomeError
from migrator.locks.redis import Locks
from migrator.runs import store
from migrator.runs.summary import (
    DatasetOutcome,
    RunSummary,
    describe_error,
    log_summary,
    outcome_from_result,
    printable_name,
)
from migrator.settings import Settings
from migrator.states import FINAL_STATUSES, DatasetStatus

log = logging.getLogger(__name__)


async def finish(
    engine: AsyncEngine,
    settings: Settings,
    locks: Locks,
    run_id: str,
    results: Sequence[Any] | None,
) -> RunSummary:
    """Aggregate the run: fill in what never reported, record the final status, log, unlock.

    ``results`` are the subtasks' returned outcomes (None when the chord itself failed).
    """
    reason = (
        "its subtask returned no outcome"
        if results is not None
        else ("its subtask failed outside the migrator: hard time limit or lost worker")
    )
    await _fill_in_missing(engine, settings, run_id, results or [], reason)
    summary = await store.close_run(engine, run_id)
    log_summary(summary)
    for outcome in summary.datasets:
        if outcome.finished_badly:
            log.error(
                "Run %s: dataset=%s (%s) status=%s error=%s",
                run_id,
                outcome.dataset_id,
                printable_name(outcome.name or "?"),
                outcome.status,
                outcome.error,
            )
    locks.run_lock().release(run_id)
    return summary


async def _fill_in_missing(
    engine: AsyncEngine, settings: Settings, run_id: str, results: Sequence[Any], reason: str
) -> None:
    reported = {r["dataset_id"]: r for r in results if isinstance(r, dict) and "dataset_id" in r}
    for dataset_id in await store.open_dataset_ids(engine, run_id):
        outcome = outcome_from_result(reported[dataset_id]) if dataset_id in reported else None
        if outcome is None or outcome.status not in FINAL_STATUSES:
            missing = NoOutcomeError(dataset_id, reason)
            outcome = DatasetOutcome(
                dataset_id, DatasetStatus.FAILED, error=describe_error(missing, settings)
            )
        await store.close_open_row(engine, run_id, outcome)
