"""Which datasets a run takes: the pending ones (defined here, once), a named subset, or what a
run left failed or unfinished. Reads only."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import DEFAULT_ENGINE_ID
from migrator.datasets import is_listed, registered_ids, resolve_dataset_refs
from migrator.errors import DatasetNotFoundError
from migrator.models import dataset_databases
from migrator.runs import store
from migrator.runs.request import RunRequest
from migrator.settings import Settings
from migrator.states import RETRY_STATUSES, DatasetState, RunStatus
from migrator.vector.base import RevisionGoal

log = logging.getLogger(__name__)

MISSING_IDS_SHOWN = 5


def is_active() -> sa.ColumnElement[bool]:
    """Datasets that take part in runs: active, and listed by their source."""
    return sa.and_(dataset_databases.c.state == DatasetState.ACTIVE, is_listed())


def _at(target: str | None) -> sa.ColumnElement[bool]:
    return dataset_databases.c.vector_schema_version.is_not_distinct_from(target)


def is_pending(target: str | None) -> sa.ColumnElement[bool]:
    """Pending: active, and the cached vector revision differs from ``target`` (the head of
    the configured chain, or the revision a run was asked to reach)."""
    # IS DISTINCT FROM: a NULL cache (no revision) differs from every revision id.
    return sa.and_(is_active(), dataset_databases.c.vector_schema_version.is_distinct_from(target))


def is_cached_at_head(head: str | None) -> sa.ColumnElement[bool]:
    """Active datasets the cache calls up to date (the ones a verify pass opens)."""
    return sa.and_(is_active(), _at(head))


async def _ids_where(engine: AsyncEngine, where: sa.ColumnElement[bool]) -> list[str]:
    query = sa.select(dataset_databases.c.dataset_id).where(where)
    async with engine.connect() as conn:
        return list(await conn.scalars(query.order_by(dataset_databases.c.dataset_id)))


async def pending_ids(engine: AsyncEngine, target: str | None) -> list[str]:
    """Every pending dataset, by id."""
    return await _ids_where(engine, is_pending(target))


async def select_pending(
    engine: AsyncEngine,
    *,
    target: str | None,
    dataset_ids: Sequence[str] | None = None,
    verify: bool = False,
) -> list[str]:
    """Pending datasets; with ``verify``, every active one.

    ``dataset_ids`` narrows the choice; an id that is not registered is an error, not a skip.
    """
    if dataset_ids is not None:
        wanted = await resolve_dataset_refs(engine, dataset_ids)
        found = set(await registered_ids(engine, wanted))
        missing = [d for d in wanted if d not in found]
        if missing:
            shown = ", ".join(missing[:MISSING_IDS_SHOWN])
            more = len(missing) - MISSING_IDS_SHOWN
            raise DatasetNotFoundError(
                f"unknown dataset id(s): {shown}" + (f" and {more} more" if more > 0 else "")
            )
        return wanted
    return await _ids_where(engine, is_active() if verify else is_pending(target))


async def select_datasets(
    engine: AsyncEngine, settings: Settings, request: RunRequest, goal: RevisionGoal
) -> list[str]:
    """The dataset ids one run migrates, one subtask each: those whose cached revision differs
    from the revision ``goal`` (planned by ``migrator.runs.goal``) reaches."""
    if not settings.enable_backend_access_control:
        return [DEFAULT_ENGINE_ID]
    target = goal.target
    if request.retry_of is not None:
        return await retry_selection(engine, request.retry_of, target)
    chosen = await select_pending(
        engine, target=target, dataset_ids=request.dataset_ids, verify=request.verify
    )
    if request.extra_ids:
        seen = set(chosen)
        chosen += [d for d in await registered_ids(engine, request.extra_ids) if d not in seen]
    return chosen


async def retry_selection(engine: AsyncEngine, run_id: str, target: str | None) -> list[str]:
    """What failed or never finished in ``run_id`` and is still registered.

    A run that failed in the relational step touched no dataset, so everything pending then is
    still pending: its retry is an ordinary pending selection.
    """
    status = await store.run_status(engine, run_id)
    if status == RunStatus.FAILED and not await store.dataset_counts(engine, run_id):
        return await pending_ids(engine, target)
    wanted = await store.dataset_ids_in(engine, run_id, RETRY_STATUSES)
    kept = await registered_ids(engine, wanted)
    if len(kept) < len(wanted):
        log.warning(
            "Retry of run %s: %d dataset(s) are no longer registered and are left out.",
            run_id,
            len(wanted) - len(kept),
        )
    return kept
