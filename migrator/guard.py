"""The application's write guard: is this dataset's vector schema where the code expects it?

``await dataset_status(dataset_id)`` is one read of ``dataset_databases`` by its primary key;
``await require_current(dataset_id, min_revision=None)`` raises ``DatasetBehindError`` when a
failed (or not yet run) migration left the dataset below the revision required, and
``DatasetRemovedError`` when the dataset source no longer returns it (runs no longer migrate it).
GUARD_CACHE_S lets a busy write path reuse a dataset's status for a few seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import control_plane
from migrator.errors import DatasetBehindError, DatasetNotFoundError, DatasetRemovedError
from migrator.models import dataset_databases
from migrator.settings import Settings, get_settings

if TYPE_CHECKING:
    from migrator.vector.revisions import RevisionChain


@dataclass(frozen=True)
class DatasetStatus:
    """What the control plane caches of one dataset's vector schema."""

    dataset_id: str
    state: str
    vector_schema_version: str | None  # the cached revision id, as the control plane stores it
    revision: str | None
    last_error: str | None
    last_migrated_at: datetime | None
    removed_at: datetime | None = None  # when DATASET_SOURCE stopped returning the dataset


# (control-plane URL, dataset id) -> (monotonic expiry, status); only used when GUARD_CACHE_S > 0.
_cache: dict[tuple[str, str], tuple[float, DatasetStatus]] = {}


def clear_cache() -> None:
    """Forget every cached status (tests; an application after it ran a migration itself)."""
    _cache.clear()


async def dataset_status(
    dataset_id: str, *, settings: Settings | None = None, engine: AsyncEngine | None = None
) -> DatasetStatus:
    """The dataset's cached status; ``DatasetNotFoundError`` when the control plane has no row
    for it. Pass ``engine`` to reuse the application's own engine on the control plane."""
    settings = settings or get_settings()
    key = (settings.database_url.get_secret_value(), dataset_id)
    if settings.guard_cache_s > 0:
        cached = _cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
    if engine is None:
        async with control_plane(settings) as own:
            status = await _read_status(own, dataset_id)
    else:
        status = await _read_status(engine, dataset_id)
    if settings.guard_cache_s > 0:
        _cache[key] = (time.monotonic() + settings.guard_cache_s, status)
    return status


async def _read_status(engine: AsyncEngine, dataset_id: str) -> DatasetStatus:
    query = sa.select(
        dataset_databases.c.state,
        dataset_databases.c.vector_schema_version,
        dataset_databases.c.last_error,
        dataset_databases.c.last_migrated_at,
        dataset_databases.c.removed_at,
    ).where(dataset_databases.c.dataset_id == dataset_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        raise DatasetNotFoundError(f"no dataset with id {dataset_id!r} in the control plane")
    return DatasetStatus(
        dataset_id,
        row.state,
        row.vector_schema_version,
        row.vector_schema_version,
        row.last_error,
        row.last_migrated_at,
        row.removed_at,
    )


async def require_current(
    dataset_id: str,
    min_revision: str | None = None,
    *,
    folder: Path | str | None = None,
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
) -> DatasetStatus:
    """Return the dataset's status when its revision is at or past ``min_revision`` (default:
    the head of ``folder``, the vector revisions the application runs with; default
    VECTOR_MIGRATIONS' folder); else raise ``DatasetBehindError`` naming both revisions."""
    # Imported here: the revisions package loads LanceDB, which `import migrator` (every CLI
    # call) must not pay for.
    from migrator.vector.chain_config import configured_chain
    from migrator.vector.revisions import load_chain

    chain = (
        load_chain(folder) if folder is not None else configured_chain(settings or get_settings())
    )
    required = min_revision if min_revision is not None else chain.head
    status = await dataset_status(dataset_id, settings=settings, engine=engine)
    if status.removed_at is not None:
        # No run migrates it any more, so its cached revision says nothing about the future.
        raise DatasetRemovedError(dataset_id, status.removed_at)
    if not _at_or_past(chain, status.revision, required):
        raise DatasetBehindError(dataset_id, status.revision, required, status.last_error)
    return status


def _at_or_past(chain: RevisionChain, revision: str | None, required: str | None) -> bool:
    wanted = chain.position(required, "required by the write guard")
    if revision is not None and revision not in chain.ids():
        # A revision this code does not know came from newer code: it is past anything here.
        return True
    return chain.position(revision, "cached for the dataset") >= wanted
