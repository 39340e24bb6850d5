"""Between two stages of a run: whether it goes on, from the run's own records.

Used by the in-process runner after each stage and by the chord body of each stage on the
broker path, so both halt on the same rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import resolve_dataset_refs
from migrator.runs import store
from migrator.runs.rollout import Rollout, budget_reason, halt_reason, parse_share
from migrator.settings import Settings
from migrator.states import count_badly


def with_default_budget(rollout: Rollout, settings: Settings) -> Rollout:
    """The rollout, with MAX_FAILURES as its budget when it names none."""
    if rollout.max_failures is not None or not settings.max_failures.strip():
        return rollout
    return dataclasses.replace(
        rollout, max_failures=parse_share(settings.max_failures, "MAX_FAILURES")
    )


async def resolve_canaries(engine: AsyncEngine, rollout: Rollout) -> Rollout:
    """The rollout with its named canaries as dataset ids (an unknown one is an error)."""
    if not rollout.canary_ids:
        return rollout
    ids = await resolve_dataset_refs(engine, rollout.canary_ids)
    return dataclasses.replace(rollout, canary_ids=tuple(ids))


def rollout_options(rollout: Rollout, budget: int | None, stage_count: int) -> dict[str, Any]:
    """What the run record keeps of its rollout; the stage bodies read it back."""
    return {
        "max_failures": budget,
        "staged": rollout.staged,
        "canary": bool(rollout.canary or rollout.canary_ids),
        "stages": stage_count,
        "wave_size": rollout.wave_size,
    }


async def stage_halt_reason(
    engine: AsyncEngine, run_id: str, stage: int, options: dict[str, Any]
) -> str | None:
    """Why the run stops after ``stage`` (its datasets all final), or None to go on.

    A staged run stops at a stage where a dataset did not succeed; any run stops once its
    failure budget is spent. After the last stage there is nothing left to stop.
    """
    if stage + 1 >= int(options.get("stages") or 1):
        return None
    if options.get("staged"):
        counts = await store.dataset_counts(engine, run_id, stage)
        failed = count_badly(counts)
        if failed:
            size = sum(counts.values())
            return halt_reason(stage, failed, size, canary=bool(options.get("canary")))
    budget = options.get("max_failures")
    if budget is not None:
        failed = count_badly(await store.dataset_counts(engine, run_id))
        if failed >= int(budget):
            return budget_reason(failed, int(budget))
    return None
