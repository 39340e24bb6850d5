"""When a run may be finished: only from the control plane's own records.

The chord body's message carries the subtasks' results, and anyone who can write to the broker
can send one. So the body never takes an outcome from its message: it finishes a run only when
every dataset row of that run is already final, and refuses otherwise (a forged body for a live
run, or a real one whose subtask could not record its outcome: the errback then takes over).

The errback fills in missing outcomes as failed, but only once the subtasks can no longer
report. Celery calls it once every part of the chord has returned or failed; a part killed at
its hard time limit may have died holding its dataset lock, and a redelivered copy may be
running: so it waits until no open row's dataset lock is held by this run (a live subtask
extends it, a killed one's lapses within DATASET_LOCK_TTL_S).

Used by the chord body and its errback (``migrator.runs.chord``).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import as_uuid
from migrator.errors import MessageRefusedError, RunStillReportingError
from migrator.locks.redis import Locks
from migrator.runs.store import RunState, dataset_ids_in, open_dataset_ids, run_state
from migrator.states import OPEN_STATUSES

log = logging.getLogger(__name__)


def checked_run_id(run_id: object) -> str:
    """``run_id`` as a canonical UUID; anything else is a refused message."""
    checked = as_uuid(str(run_id))
    if checked is None:
        raise MessageRefusedError("task message refused: the run id is not a UUID")
    return checked


async def known_run(engine: AsyncEngine, run_id: str) -> RunState:
    """The run's state; a finish message for a run that is not recorded is refused."""
    state = await run_state(engine, run_id)
    if state is None:
        log.error("Finish message for run %s refused: no such run.", run_id)
        raise MessageRefusedError(f"finish message refused: no run {run_id}")
    return state


async def require_all_final(engine: AsyncEngine, run_id: str, stage: int | None = None) -> None:
    """For the chord body: refuse (and log) when any dataset of the run (of its ``stage``) has
    no outcome."""
    open_ids = await dataset_ids_in(engine, run_id, OPEN_STATUSES, stage)
    if open_ids:
        log.error(
            "Finish message for run %s refused: %d dataset(s) have no recorded outcome yet "
            "(first: %s); a run is finished from its records, never from a message.",
            run_id,
            len(open_ids),
            open_ids[0],
        )
        raise MessageRefusedError(
            f"finish message refused: run {run_id} has {len(open_ids)} dataset(s) not finished"
        )


async def require_silent(engine: AsyncEngine, locks: Locks, state: RunState) -> None:
    """For the errback: raise RunStillReportingError while a subtask of the run may still
    record an outcome."""
    open_ids = await open_dataset_ids(engine, state.run_id)
    if not open_ids:
        return
    live = 0
    for dataset_id in open_ids:
        holder = locks.subtask_lock(dataset_id).holder()
        live += holder is not None and holder.run_id == state.run_id
    if live:
        raise RunStillReportingError(state.run_id, live, state.idle_s())
