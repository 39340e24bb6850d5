"""What a heavy operation may use, and what it reports while it runs.

``Resources`` holds the defaults from settings (INDEX_MAINTENANCE_WORK_MEM,
INDEX_PARALLEL_WORKERS, BACKFILL_BATCH_ROWS, BACKFILL_RATE_LIMIT_ROWS_S); an operation's own
keyword arguments (``op.create_index(..., maintenance_work_mem="256MB")``) win over them.
``OperationProgress`` is what an executor tells the run path about an index build or backfill
in flight, through an ``OnProgress`` callback, so the executors know nothing of the run record.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# PostgreSQL's own memory units; a bare number would be read in kB, which nobody means.
MEMORY = re.compile(r"\s*(\d{1,12})\s*(kB|MB|GB|TB)\s*")
# maintenance_work_mem's bounds in PostgreSQL: 1 MB to 2 TB (in kB).
MEMORY_MIN_KB = 1024
MEMORY_MAX_KB = 2147483647
MEMORY_UNIT_KB = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
# max_parallel_maintenance_workers' upper bound in PostgreSQL.
PARALLEL_WORKERS_MAX = 1024
DEFAULT_BATCH_ROWS = 1000


def memory_problem(value: object) -> str | None:
    """Why ``value`` is not a maintenance_work_mem setting (``'256MB'``, ``'1GB'``), or None."""
    if not isinstance(value, str):
        return f"maintenance_work_mem must be text like '256MB', got {value!r}"
    found = MEMORY.fullmatch(value)
    if found is None:
        return f"maintenance_work_mem must be a number and a unit (kB, MB, GB, TB), got {value!r}"
    kb = int(found.group(1)) * MEMORY_UNIT_KB[found.group(2)]
    if not MEMORY_MIN_KB <= kb <= MEMORY_MAX_KB:
        return f"maintenance_work_mem must be between 1MB and 2TB, got {value!r}"
    return None


def normal_memory(value: str) -> str:
    """``' 256 MB '`` -> ``'256MB'``: the form given to SET (already validated)."""
    found = MEMORY.fullmatch(value)
    assert found is not None, "validated by memory_problem"
    return f"{found.group(1)}{found.group(2)}"


def workers_problem(value: object) -> str | None:
    """Why ``value`` is not a count of parallel maintenance workers, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"parallel_workers must be an integer >= 0, got {value!r}"
    if not 0 <= value <= PARALLEL_WORKERS_MAX:
        return f"parallel_workers must be between 0 and {PARALLEL_WORKERS_MAX}, got {value!r}"
    return None


def rate_problem(value: object) -> str | None:
    """Why ``value`` is not a rate limit in rows per second (0: unlimited), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return f"rate_limit_rows_s must be a number >= 0 (0: unlimited), got {value!r}"
    return None


@dataclass(frozen=True)
class Resources:
    """Defaults for heavy operations; None means the server's own setting."""

    maintenance_work_mem: str | None = None
    parallel_workers: int | None = None
    backfill_batch_rows: int = DEFAULT_BATCH_ROWS
    backfill_rate_limit_rows_s: float = 0.0
    progress_interval_s: float = 2.0
    # How long to wait for another backend's live build of an index this revision builds.
    live_build_wait_s: float = 60.0

    def index_settings(
        self, maintenance_work_mem: str | None, parallel_workers: int | None
    ) -> dict[str, str]:
        """The session settings an index build runs with: the operation's, else these."""
        memory = maintenance_work_mem or self.maintenance_work_mem
        workers = parallel_workers if parallel_workers is not None else self.parallel_workers
        found: dict[str, str] = {}
        if memory:
            found["maintenance_work_mem"] = normal_memory(memory)
        if workers is not None:
            found["max_parallel_maintenance_workers"] = str(int(workers))
        return found

    def batch_rows(self, batch_size: int | None) -> int:
        return batch_size if batch_size is not None else self.backfill_batch_rows

    def rate_limit(self, rate_limit_rows_s: float | None) -> float:
        """Rows per second a backfill may write; 0 for unlimited."""
        if rate_limit_rows_s is not None:
            return float(rate_limit_rows_s)
        return self.backfill_rate_limit_rows_s


@dataclass(frozen=True)
class OperationProgress:
    """A heavy operation in flight: ``operation`` names it (``create_index hnsw ix_name``,
    ``backfill chunks.embedding``), ``phase`` is the server's phase of an index build (None for
    a backfill), ``done`` of ``total`` in ``unit`` (``blocks``, ``tuples``, ``rows``,
    ``fragments``); ``total`` None when unknown. No secrets: names of the dataset's objects."""

    operation: str
    phase: str | None
    done: int
    total: int | None
    unit: str

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(self.done * 100 / self.total))

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
        }


OnProgress = Callable[[OperationProgress], None]


@dataclass(frozen=True)
class HeavyOptions:
    """How an executor runs heavy operations: ``resources`` (defaults from settings) and
    ``on_progress``, told how a long operation is doing (None: nobody listens)."""

    resources: Resources = field(default_factory=Resources)
    on_progress: OnProgress | None = None


def describe_progress(progress: dict[str, Any]) -> str:
    """One short line for a person, from a recorded progress object:
    ``create_index hnsw ix 43% of 1200 blocks (building index: loading tuples)``."""
    operation = str(progress.get("operation") or "?")
    done, total = progress.get("done"), progress.get("total")
    unit = str(progress.get("unit") or "")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        amount = f" {min(100, done * 100 // total)}% of {total} {unit}".rstrip()
    elif isinstance(done, int):
        amount = f" {done} {unit}".rstrip()
    else:
        amount = ""
    phase = progress.get("phase")
    return f"{operation}{amount}" + (f" ({phase})" if phase else "")


class RateLimiter:
    """Paces batches at ``rows_per_s`` (0: unlimited): a batch may start no sooner than the
    previous one's rows at that rate after the previous one could. A slow stretch (a slow
    embedding service) is not made up by a burst after it: what the limit protects never sees
    more than the rate over any run of batches."""

    def __init__(self, rows_per_s: float) -> None:
        self.rows_per_s = rows_per_s
        self._next_at = time.monotonic()

    def delay_s(self, rows: int) -> float:
        """After a batch of ``rows``: how long to wait before the next one."""
        if self.rows_per_s <= 0:
            return 0.0
        now = time.monotonic()
        self._next_at = max(now, self._next_at + rows / self.rows_per_s)
        return self._next_at - now

    async def wait(self, rows: int) -> None:
        delay = self.delay_s(rows)
        if delay > 0:
            await asyncio.sleep(delay)

    def wait_blocking(self, rows: int) -> None:
        """For code already in a worker thread (LanceDB's batch function)."""
        delay = self.delay_s(rows)
        if delay > 0:
            time.sleep(delay)
