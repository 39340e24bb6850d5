"""What a trigger does before sending a broker run: take the run lock, or name the run holding
it; and the clean-up of runs that went stale, which every claim and the scheduled check do.

The run lock (``migrator.locks.redis``) makes runs single across every trigger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import RUN_CLAIM_TRIES
from migrator.db import utcnow
from migrator.errors import RunBusyError, StaleRunError
from migrator.locks.redis import LockRecord, Locks, RedisLock
from migrator.runs import store
from migrator.runs.summary import describe_error
from migrator.settings import Settings
from migrator.states import RunStatus

log = logging.getLogger(__name__)


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
        state = await store.run_state(engine, holder.run_id)
    except (DBAPIError, OSError):
        return False  # unreachable or not migrated yet: nothing to judge the holder by
    if state is None:
        return False  # not recorded yet: its parent is queued or upgrading the control plane
    if state.status == RunStatus.RUNNING:
        if state.idle_s() <= settings.run_stale_after_s:
            return False
        await mark_stale(engine, settings, state)
    released = lock.release(holder.token)
    if released:
        log.warning(
            "Run lock of run %s (%s) cleared: the run is over.", holder.run_id, state.status
        )
    return released


async def mark_stale(engine: AsyncEngine, settings: Settings, state: store.RunState) -> bool:
    """Fail a running run that made no progress for RUN_STALE_AFTER_S; True when marked."""
    error = describe_error(StaleRunError(state.run_id, state.idle_s()), settings)
    marked = await store.fail_run(engine, state.run_id, error, only_running=True)
    if marked:
        log.error("Run %s marked failed: %s", state.run_id, error)
    return marked


async def recover_stale_runs(engine: AsyncEngine, settings: Settings, locks: Locks) -> list[str]:
    """Fail every running run idle for RUN_STALE_AFTER_S and free the run lock if one holds it."""
    now = utcnow()
    stale = [
        s for s in await store.running_runs(engine) if s.idle_s(now) > settings.run_stale_after_s
    ]
    lock = locks.run_lock()
    marked = []
    for state in stale:
        if await mark_stale(engine, settings, state):
            marked.append(state.run_id)
        lock.release(state.run_id)
    return marked
