"""Carry a dataset's long-operation progress from its executor to the run record.

The executors report through a plain callback (``OnProgress``), as often as they sample; this
relay keeps the latest report, writes it to ``migration_run_datasets.progress`` at most once
per ``interval_s`` (one write in flight at a time, off the migration's own path), and tells an
in-process listener (the ``migrator run`` progress bar) at once. The first write waits until the
dataset has been migrating for ``interval_s``: a fleet of quick datasets costs the control plane
nothing more. A failed write is logged and never fails the migration it describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from migrator.vector.revisions.resources import OperationProgress

log = logging.getLogger(__name__)

# (dataset id, progress) for a listener in the same process.
OperationListener = Callable[[str, OperationProgress], None]
ProgressWrite = Callable[[dict[str, Any]], Awaitable[object]]


class ProgressRelay:
    def __init__(
        self,
        dataset_id: str,
        write: ProgressWrite,
        interval_s: float,
        listener: OperationListener | None = None,
    ) -> None:
        self.dataset_id = dataset_id
        self.interval_s = interval_s
        self._write = write
        self._listener = listener
        self._latest: dict[str, Any] | None = None
        self._written: dict[str, Any] | None = None
        self._last_write_at = time.monotonic()  # nothing worth showing before one interval
        self._task: asyncio.Task[None] | None = None

    def report(self, progress: OperationProgress) -> None:
        """The executor's callback: keep the latest, write it when one is due."""
        self._latest = progress.to_dict()
        if self._listener is not None:
            self._listener(self.dataset_id, progress)
        due = time.monotonic() - self._last_write_at >= self.interval_s
        if due and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def close(self) -> None:
        """Once anything was written, write the latest too (where the last operation got),
        then stop. Called before the dataset's outcome is recorded: a running row takes it."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._written is not None:
            await self._flush()

    async def _flush(self) -> None:
        latest = self._latest
        if latest is None or latest == self._written:
            return
        self._last_write_at = time.monotonic()
        try:
            await self._write(latest)
            self._written = latest
        except Exception as exc:  # the run record lagging is no reason to stop a migration
            log.warning(
                "dataset=%s progress not recorded: %s: %s", self.dataset_id, type(exc).__name__, exc
            )
