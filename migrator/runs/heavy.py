"""Heavy datasets: those whose pending revisions declare a budget longer than the default.

A revision is heavy when it declares ``heavy_budget_s`` or records an operation with
``heavy=True``/``budget_s=`` (``RevisionChain.heavy_budget_s``). A dataset is heavy when a
revision on its way from its cached revision to the run's goal is; it then gets:

- ``run_s`` = max(DATASET_TIMEOUT_S, budget) as its own bound, in-process and in a worker (the
  adapter's statement timeout and lock waits included);
- on Celery, the heavy queue (HEAVY_QUEUE) with soft/hard limits from the budget
  (``HeavyLimits``), so a heavy worker with its own concurrency takes it;
- one of HEAVY_PER_SERVER_CONCURRENCY heavy slots of its server, on top of the server cap;
- a run kept from going stale while it works (``keep_run_alive``).

The cached revision decides, as it decides selection: a chain with no heavy revision costs no
query at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import DEFAULT_WAIT_TIMEOUT_S, LOCK_HEARTBEATS_PER_TTL
from migrator.datasets import ID_BATCH, load_targets
from migrator.db import Bind, utcnow
from migrator.models import dataset_databases
from migrator.runs import store
from migrator.runs.goal import run_goal
from migrator.settings import Settings
from migrator.vector.base import DOWNGRADE, RevisionGoal
from migrator.vector.chain_config import configured_chain
from migrator.vector.revisions import RevisionChain
from migrator.vector.revisions.errors import RevisionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeavyLimits:
    """The bounds of one heavy dataset, from its budget.

    ``run_s`` bounds the migration itself; on Celery the soft limit leaves room for one other
    heavy dataset of the same server ahead of it (HEAVY_PER_SERVER_CONCURRENCY), and the hard
    limit keeps the default distance above the soft one, so ``timed_out`` is still recorded.
    """

    budget_s: float
    run_s: float
    soft_s: float
    hard_s: float


def heavy_limits(settings: Settings, budget_s: float) -> HeavyLimits:
    run_s = max(settings.dataset_timeout_s, budget_s)
    soft_s = max(settings.dataset_soft_time_limit_s, 2 * run_s)
    margin_s = settings.dataset_time_limit_s - settings.dataset_soft_time_limit_s
    return HeavyLimits(budget_s, run_s, soft_s, soft_s + max(margin_s, 1.0))


def dataset_timeout_s(settings: Settings, budget_s: float | None) -> float:
    """The bound of one dataset: DATASET_TIMEOUT_S, or its heavy budget when that is longer."""
    if budget_s is None:
        return settings.dataset_timeout_s
    return heavy_limits(settings, budget_s).run_s


def with_budget(settings: Settings, budget_s: float | None) -> Settings:
    """``settings`` as a heavy dataset's adapter sees them: DATASET_TIMEOUT_S (its statement
    timeout and lock waits) grown to the budget. Light datasets get ``settings`` itself."""
    timeout_s = dataset_timeout_s(settings, budget_s)
    if timeout_s == settings.dataset_timeout_s:
        return settings
    return settings.model_copy(update={"dataset_timeout_s": timeout_s})


def chain_is_heavy(settings: Settings) -> bool:
    """True when any revision of the configured chain is heavy (else no budget is looked up)."""
    return bool(configured_chain(settings).heavy_revisions())


def path_budget_s(
    chain: RevisionChain, provider: str, cached: str | None, goal: RevisionGoal
) -> float | None:
    """The heavy budget of the way from ``cached`` to ``goal`` on ``provider``; None: light.
    A cached revision this chain does not know counts the whole chain (the safe side)."""
    try:
        if goal.direction == DOWNGRADE:
            path = chain.downgrade_path(cached, goal.target)
        else:
            path = chain.upgrade_path(cached, goal.target)
    except RevisionError:
        path = list(chain.revisions)
    return chain.heavy_budget_s(path, provider, goal.direction)


@dataclass(frozen=True)
class HeavyDataset:
    """One heavy dataset of a run: its provider (which decides its heavy slot) and budget."""

    dataset_id: str
    provider: str
    budget_s: float


async def heavy_datasets(
    bind: Bind, settings: Settings, goal: RevisionGoal, dataset_ids: Sequence[str]
) -> dict[str, HeavyDataset]:
    """The heavy datasets among ``dataset_ids``, by id (light ones are absent)."""
    if not dataset_ids or not chain_is_heavy(settings):
        return {}
    chain = configured_chain(settings)
    found: dict[str, HeavyDataset] = {}
    for start in range(0, len(dataset_ids), ID_BATCH):
        chunk = list(dataset_ids[start : start + ID_BATCH])
        for row in await load_targets(bind, dataset_databases.c.dataset_id.in_(chunk)):
            target = row.target
            budget = path_budget_s(chain, target.provider, row.cached_version, goal)
            if budget is not None:
                found[target.dataset_id] = HeavyDataset(target.dataset_id, target.provider, budget)
    return found


async def run_heavy_datasets(
    engine: AsyncEngine, settings: Settings, run_id: str, dataset_ids: Sequence[str]
) -> dict[str, HeavyDataset]:
    """``heavy_datasets`` for a recorded run's goal (what a stage's chord is built from)."""
    if not dataset_ids or not chain_is_heavy(settings):
        return {}
    return await heavy_datasets(engine, settings, await run_goal(engine, run_id), dataset_ids)


@asynccontextmanager
async def keep_run_alive(
    engine: AsyncEngine, settings: Settings, run_id: str
) -> AsyncIterator[None]:
    """While a heavy dataset works, advance its run's ``last_progress_at`` a few times per
    RUN_STALE_AFTER_S, so the stale-run check never takes a live heavy operation for a dead
    run; a killed process stops touching, and its run goes stale as before."""
    interval_s = settings.run_stale_after_s / LOCK_HEARTBEATS_PER_TTL

    async def touch() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                async with engine.begin() as conn:
                    await store.touch_run(conn, run_id, utcnow())
            except Exception as exc:  # the control plane blinking must not fail the dataset
                log.warning("Run %s: could not record progress (%s).", run_id, type(exc).__name__)

    task = asyncio.create_task(touch(), name=f"keep-run-alive-{run_id}")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def wait_shortfall(
    engine: AsyncEngine,
    settings: Settings,
    goal: RevisionGoal,
    dataset_ids: Sequence[str],
    wait_s: float,
) -> str | None:
    """Why a trigger waiting ``wait_s`` for a run of ``dataset_ids`` would give up while the
    run goes on (a heavy dataset's budget is longer), naming the numbers; None when it fits."""
    heavy = await heavy_datasets(engine, settings, goal, dataset_ids)
    if not heavy:
        return None
    longest = max(heavy.values(), key=lambda found: found.budget_s)
    limits = heavy_limits(settings, longest.budget_s)
    if wait_s >= limits.run_s:
        return None
    return (
        f"{len(heavy)} heavy dataset(s) in this run; dataset {longest.dataset_id} has a budget "
        f"of {limits.run_s:g}s (up to {limits.soft_s:g}s on a worker behind another heavy "
        f"build), longer than --timeout {wait_s:g}: the wait would end (exit 4) while the run "
        f"goes on; give --timeout {limits.soft_s:g} or more"
    )


def heavy_limit_problems(settings: Settings) -> list[str]:
    """What must grow for the configured chain's heavy budgets, one sentence each, naming the
    numbers; empty when every budget fits. The worker refuses to start on any of them
    (``worker.config.validate_limits``); ``migrator check`` and the scheduled check report
    them."""
    try:
        heavy = configured_chain(settings).heavy_revisions()
    except RevisionError:
        return []
    if not heavy:
        return []
    revision, budget_s = max(heavy.items(), key=lambda item: item[1])
    limits = heavy_limits(settings, budget_s)
    problems = []
    visibility_s = settings.redis_visibility_timeout_s
    if limits.hard_s >= visibility_s:
        problems.append(
            f"revision {revision} declares a heavy budget of {budget_s:g}s: its subtask's "
            f"limits are soft {limits.soft_s:g}s / hard {limits.hard_s:g}s (twice the budget, "
            "room for one heavy dataset ahead on its server), so REDIS_VISIBILITY_TIMEOUT_S "
            f"({visibility_s:g}) must grow above {limits.hard_s:g}; otherwise Redis hands the "
            "live heavy task to a second worker"
        )
    minimum_expires_s = limits.hard_s + DEFAULT_WAIT_TIMEOUT_S
    if settings.result_expires_s < minimum_expires_s:
        problems.append(
            f"revision {revision} declares a heavy budget of {budget_s:g}s: RESULT_EXPIRES_S "
            f"({settings.result_expires_s:g}) must grow to at least {minimum_expires_s:g} "
            "(the heavy hard limit plus the default wait), or the chord state lapses first"
        )
    return problems
