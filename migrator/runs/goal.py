"""Where a run takes the vector datasets: planned once by whoever records the run (the
in-process runner, the broker's parent task) against its own configured chain, kept in the
run record, and read back by every delivery, which refuses a dataset when its own folder has
another head (mixed deployments during a rollout)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrator.datasets import cached_revisions
from migrator.db import connection
from migrator.models import migration_runs
from migrator.settings import Settings
from migrator.vector.base import DOWNGRADE, UPGRADE, RevisionGoal
from migrator.vector.chain_config import configured_chain
from migrator.vector.revisions.errors import RevisionError

OPTIONS_KEY = "vector"
BASE = "base"  # `--to base` on a downgrade: undo every revision


def plan_goal(settings: Settings, to_revision: str | None, *, downgrade: bool) -> RevisionGoal:
    """The goal of a new run. Loads the configured chain (a folder that is not one clean chain
    raises, naming the file, before any dataset is touched; so does a heavy revision whose
    budget is missing or not positive) and checks ``to_revision`` is in it;
    ``refuse_blocked_downgrade`` checks a downgrade's path once its datasets are chosen."""
    chain = configured_chain(settings)
    # A heavy revision without a valid budget is refused here, naming it, before any dataset.
    chain.heavy_revisions()
    if downgrade:
        if to_revision is None:
            raise RevisionError("a downgrade needs --to REV (a revision id, or 'base')")
        target = (
            None if to_revision == BASE else chain.get(to_revision, "downgrade target").revision
        )
        return RevisionGoal(target, DOWNGRADE, chain.head)
    target = chain.head if to_revision is None else chain.get(to_revision, "--to").revision
    return RevisionGoal(target, UPGRADE, chain.head)


async def refuse_blocked_downgrade(
    engine: AsyncEngine, settings: Settings, goal: RevisionGoal, dataset_ids: list[str]
) -> None:
    """Before any dataset is touched: a downgrade whose way down, from the highest revision its
    datasets are cached at, passes a revision without ``downgrade`` raises
    ``MissingDowngradeError`` naming it. A dataset whose cache is stale still refuses alone."""
    if goal.direction != DOWNGRADE or not dataset_ids:
        return
    chain = configured_chain(settings)
    cached = await cached_revisions(engine, dataset_ids)
    top = max((chain.position(r) for r in cached if r in chain.ids()), default=0)
    if top > chain.position(goal.target):
        chain.downgrade_path(chain.ids()[top - 1], goal.target)


def goal_options(goal: RevisionGoal) -> dict[str, Any]:
    """What the run record keeps of the goal (under ``options["vector"]``)."""
    return {
        OPTIONS_KEY: {
            "target": goal.target,
            "direction": goal.direction,
            "head": goal.expected_head,
        }
    }


def goal_from_options(options: dict[str, Any] | None) -> RevisionGoal:
    """The goal a run recorded; a run recorded before goals existed upgrades to head."""
    recorded = (options or {}).get(OPTIONS_KEY)
    if not isinstance(recorded, dict):
        return RevisionGoal()
    direction = DOWNGRADE if recorded.get("direction") == DOWNGRADE else UPGRADE
    return RevisionGoal(recorded.get("target"), direction, recorded.get("head"))


async def run_goal(bind: AsyncEngine | AsyncConnection, run_id: str) -> RevisionGoal:
    async with connection(bind) as conn:
        options = await conn.scalar(
            migration_runs.select()
            .with_only_columns(migration_runs.c.options)
            .where(migration_runs.c.id == run_id)
        )
    return goal_from_options(options)
