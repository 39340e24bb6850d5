"""``migrator plan --deep``: open each planned dataset, read only, and report what its own store
says: rows per collection from the store's metadata and the revision it records, beside the
one the control plane caches.

At most MIGRATION_CONCURRENCY datasets are open at once, each bounded by DATASET_TIMEOUT_S (its
statements by QUERY_TIMEOUT_S, as the adapter sets them). A dataset that cannot be read shows
its error, secrets removed; the others are still read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import ID_BATCH, CachedTarget, load_targets
from migrator.models import dataset_databases
from migrator.runs.summary import describe_error
from migrator.settings import Settings
from migrator.vector.chain_config import as_revision
from migrator.vector.registry import adapter_factory
from migrator.vector.stats import ROWS_NOT_REPORTED, StatsReader, StoreStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreRead:
    """One dataset's store as read by ``--deep``; ``rows`` None when the adapter reports none."""

    dataset_id: str
    cached_revision: str | None
    store_revision: str | None = None
    rows: dict[str, int | None] | None = None
    rows_basis: str = ROWS_NOT_REPORTED
    error: str | None = None

    @property
    def drifted(self) -> bool:
        """The store records another revision than the control plane caches."""
        return self.error is None and self.store_revision != self.cached_revision

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "cached": self.cached_revision,
            "store": self.store_revision,
            "drift": self.drifted,
            "rows": self.rows,
            "rows_basis": self.rows_basis,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


async def read_stores(
    engine: AsyncEngine, settings: Settings, dataset_ids: Sequence[str]
) -> dict[str, StoreRead]:
    """Each dataset's store, by id; every failure is reported in its entry, none raised."""
    targets: list[CachedTarget] = []
    for start in range(0, len(dataset_ids), ID_BATCH):
        batch = list(dataset_ids[start : start + ID_BATCH])
        targets += await load_targets(engine, dataset_databases.c.dataset_id.in_(batch))
    gate = asyncio.Semaphore(settings.migration_concurrency)

    async def one(cached: CachedTarget) -> StoreRead:
        async with gate:
            return await read_store(cached, settings)

    return {read.dataset_id: read for read in await asyncio.gather(*map(one, targets))}


async def read_store(cached: CachedTarget, settings: Settings) -> StoreRead:
    """Open one dataset's adapter, read its stats (or, without ``read_stats``, its version)."""
    target = cached.target
    adapter = None
    try:
        adapter = adapter_factory(target.provider)(target, settings)
        async with asyncio.timeout(settings.dataset_timeout_s):
            if isinstance(adapter, StatsReader):
                stats = await adapter.read_stats()
            else:
                stats = StoreStats(as_revision(await adapter.read_version()))
    except TimeoutError:
        error = f"TimeoutError: exceeded DATASET_TIMEOUT_S={settings.dataset_timeout_s:g}"
        return StoreRead(target.dataset_id, cached.cached_version, error=error)
    except Exception as exc:  # one unreadable dataset must not stop the plan
        error = describe_error(exc, settings)
        return StoreRead(target.dataset_id, cached.cached_version, error=error)
    finally:
        if adapter is not None:
            await _close_quietly(adapter)
    reported = stats.rows_basis != ROWS_NOT_REPORTED
    return StoreRead(
        target.dataset_id,
        cached.cached_version,
        as_revision(stats.revision),
        dict(stats.rows) if reported else None,
        stats.rows_basis,
    )


async def _close_quietly(adapter: Any) -> None:
    try:
        await adapter.close()
    except Exception:
        log.debug("Plan: closing an adapter failed.", exc_info=True)
