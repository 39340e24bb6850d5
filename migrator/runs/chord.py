"""The chord body of a broker run and its errback: finish the run from its own records (never
from the message), log, and release the run lock.

A staged run (a canary, waves) sends one chord per stage; each stage's body decides from the
records whether the next stage goes (``next_stage``) and only the last one finishes the run.
No task waits on another's result: a body that lets the run go on sends the next chord.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.errors import NoOutcomeError
from migrator.locks.redis import Locks
from migrator.runs import finish_rules, store
from migrator.runs.stages import stage_halt_reason
from migrator.runs.summary import (
    DatasetOutcome,
    RunSummary,
    describe_error,
    log_summary,
)
from migrator.settings import Settings
from migrator.states import OPEN_STATUSES, DatasetStatus, RunStatus
from migrator.urls import escape_controls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageStep:
    """What a stage's chord body decided: the next stage and its datasets to send, or the
    run's summary (finished, halted, or in another body's hands)."""

    summary: RunSummary | None = None
    stage: int = 0
    dataset_ids: list[str] = field(default_factory=list)


async def next_stage(
    engine: AsyncEngine,
    settings: Settings,
    locks: Locks,
    run_id: str,
    stage: int,
    results: Sequence[Any],
) -> StageStep:
    """The body of ``stage``'s chord: once every dataset of that stage has its outcome, send
    the next stage, or halt the run (canary or wave failed, budget spent), or finish it after
    the last stage. Refuses while a dataset of the stage has no outcome."""
    run_id = finish_rules.checked_run_id(run_id)
    state = await finish_rules.known_run(engine, run_id)
    if state.status != RunStatus.RUNNING:
        return StageStep(await store.get_run(engine, run_id))
    options = await store.run_options(engine, run_id)
    if stage + 1 >= int(options.get("stages") or 1):
        return StageStep(await finish(engine, settings, locks, run_id, results))
    await finish_rules.require_all_final(engine, run_id, stage)
    reason = await stage_halt_reason(engine, run_id, stage, options)
    if reason is not None:
        deferred = await store.defer_pending(engine, run_id, reason)
        log.warning("Run %s halted: %s (%d deferred).", run_id, reason, deferred)
        return StageStep(await finish(engine, settings, locks, run_id, results))
    if not await store.advance_stage(engine, run_id, stage):
        log.warning("Run %s: stage %d was already sent on; nothing to do.", run_id, stage + 1)
        return StageStep(await store.get_run(engine, run_id))
    ids = await store.dataset_ids_in(engine, run_id, OPEN_STATUSES, stage + 1)
    log.info("Run %s: stage %d passed; sending stage %d (%d).", run_id, stage, stage + 1, len(ids))
    return StageStep(stage=stage + 1, dataset_ids=ids)


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
        stage = await store.current_stage(engine, run_id)
        halted = f"run halted: the chord of stage {stage} failed; not started"
        await store.defer_pending(engine, run_id, halted, after_stage=stage)
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
