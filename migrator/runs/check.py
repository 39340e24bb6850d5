"""The scheduled check: is anything behind? Reads, reports, and never migrates by itself.

It compares the control plane's revision with head, finds datasets that are pending (their
cached version is behind head) or drifted (the version their own database records disagrees
with the cache), and fails runs that stopped making progress. Whether a run is then enqueued is
the caller's decision (MIGRATION_CHECK_ACTION), made through the same run lock as every trigger.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import CHECK_IDS_SHOWN
from migrator.datasets import dataset_names, load_targets, quarantined_ids
from migrator.db import utcnow
from migrator.errors import DatasetSourceError
from migrator.locks.heartbeat import heartbeat
from migrator.locks.redis import LockRecord, Locks
from migrator.relational import alembic_config, current_revision, head_revision
from migrator.runs.heavy import heavy_limit_problems
from migrator.runs.request import RunRequest
from migrator.runs.selection import is_cached_at_head, pending_ids
from migrator.runs.store import last_finished_at
from migrator.runs.summary import dataset_label, quoted_name
from migrator.runs.trigger import claim_run, recover_stale_runs
from migrator.settings import Settings
from migrator.sources import sync_source
from migrator.states import Trigger
from migrator.vector.base import DatasetTarget
from migrator.vector.chain_config import as_revision, configured_head
from migrator.vector.registry import adapter_factory

log = logging.getLogger(__name__)

# The id lists a report holds; each is shown cut to CHECK_IDS_SHOWN with its count.
LISTS = ("pending", "drifted", "unreadable", "quarantined", "source_refused")


@dataclass
class CheckReport:
    """What one check found; ``to_dict`` is the task result, with id lists cut short.

    ``request`` is the run the check decided to start (its run lock already taken); the caller
    sends it.
    """

    relational_current: str | None
    relational_head: str | None
    inspected_at: datetime = field(default_factory=utcnow)
    pending: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    # Rows of an external DATASET_SOURCE that were refused (by id), or why it could not be read.
    source_refused: list[str] = field(default_factory=list)
    source_error: str | None = None
    stale_runs: list[str] = field(default_factory=list)
    # Settings a declared heavy budget needs grown (the worker refuses to start meanwhile).
    settings_problems: list[str] = field(default_factory=list)
    run_in_progress: str | None = None
    action: str = "report"
    enqueued_run: str | None = None
    request: RunRequest | None = None
    # Names of the datasets a person is shown (the first CHECK_IDS_SHOWN of each list); not in
    # the task result, which stays small.
    names: dict[str, str] = field(default_factory=dict)

    def labels(self, key: str) -> list[str]:
        """The first CHECK_IDS_SHOWN datasets of ``pending``/``drifted``/``unreadable``, as a
        person reads them: ``name (id)``."""
        return [dataset_label(i, self.names.get(i)) for i in self.shown_ids(key)]

    def shown_ids(self, key: str) -> list[str]:
        """The ids of one list that a person is shown."""
        ids: list[str] = getattr(self, key)
        return ids[:CHECK_IDS_SHOWN]

    @property
    def relational_behind(self) -> bool:
        return self.relational_current != self.relational_head

    @property
    def needs_run(self) -> bool:
        return self.relational_behind or bool(self.pending or self.drifted)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "relational_current": self.relational_current,
            "relational_head": self.relational_head,
            "relational_behind": self.relational_behind,
            "needs_run": self.needs_run,
            "inspected_at": self.inspected_at.isoformat(),
            "stale_runs": self.stale_runs,
            "run_in_progress": self.run_in_progress,
            "action": self.action,
            "enqueued_run": self.enqueued_run,
            "source_error": self.source_error,
            "settings_problems": self.settings_problems,
        }
        for key in LISTS:
            ids: list[str] = getattr(self, key)
            data[key] = ids[:CHECK_IDS_SHOWN]
            data[f"{key}_count"] = len(ids)
        return data


async def run_check(engine: AsyncEngine, settings: Settings, locks: Locks) -> CheckReport | None:
    """One scheduled check, under the check lock; None when another check is still running.

    With MIGRATION_CHECK_ACTION=enqueue and work found, it takes the run lock for a new run and
    puts that run in ``report.request``, unless a run is in progress or one finished while it
    looked (its findings are then stale: the next check decides).
    """
    lock = locks.check_lock()
    mine = LockRecord.new("scheduled-check")
    if not lock.acquire(mine):
        log.info("Scheduled check skipped: the previous one is still running.")
        return None
    try:
        with heartbeat([(lock, mine.token)]):
            report = await inspect(engine, settings, locks)
            report.action = settings.migration_check_action
            if report.action == "enqueue" and report.needs_run and not report.run_in_progress:
                await _claim_for(engine, settings, locks, report)
    finally:
        lock.release(mine.token)
    log_report(report)
    return report


async def _claim_for(
    engine: AsyncEngine, settings: Settings, locks: Locks, report: CheckReport
) -> None:
    request = RunRequest(
        run_id=str(uuid.uuid4()),
        trigger=Trigger.BEAT,
        requested_by="celery beat",
        extra_ids=tuple(report.drifted),
    )
    claim = await claim_run(locks, settings, request.run_id, request.trigger, engine)
    if not claim.started:
        report.run_in_progress = claim.run_id
        return
    finished_at = await last_finished_at(engine)
    if finished_at is not None and finished_at >= report.inspected_at:
        locks.run_lock().release(request.run_id)
        log.info("Scheduled check: a run finished while it looked; the next check decides.")
        return
    report.request = request
    report.enqueued_run = request.run_id


async def inspect(
    engine: AsyncEngine, settings: Settings, locks: Locks, *, verify: bool | None = None
) -> CheckReport:
    """Everything the check reads; fails stale runs (and frees their lock) on the way.

    The control-plane pass is cheap at any size; the verify pass (``verify``, default
    MIGRATION_CHECK_VERIFY) opens every up-to-date dataset to compare its own record.
    """
    inspected_at = utcnow()
    config = alembic_config(settings)
    head = head_revision(config)
    current = await current_revision(engine, config)
    report = CheckReport(
        relational_current=current, relational_head=head, inspected_at=inspected_at
    )
    report.settings_problems = heavy_limit_problems(settings)
    if current is None:
        return report  # an empty control plane: no registry to read yet
    report.stale_runs = await recover_stale_runs(engine, settings, locks)
    holder = locks.run_lock().holder()
    report.run_in_progress = holder.run_id if holder else None
    if settings.enable_backend_access_control:
        if not report.relational_behind:  # an older control plane has no room for its state
            await _sync_source(engine, settings, report)
        head = configured_head(settings)
        report.pending = await pending_ids(engine, head)
        if settings.migration_check_verify if verify is None else verify:
            report.drifted, report.unreadable = await find_drift(engine, settings, head)
        report.quarantined = await quarantined_ids(engine)
        shown = {i for key in LISTS for i in report.shown_ids(key)}
        report.names = await dataset_names(engine, shown)
    return report


async def _sync_source(engine: AsyncEngine, settings: Settings, report: CheckReport) -> None:
    """Pick up datasets the application added or removed since the last run or check."""
    try:
        synced = await sync_source(engine, settings)
    except DatasetSourceError as exc:
        report.source_error = str(exc)
        log.error("Scheduled check: %s", exc)
        return
    if synced is not None:
        report.source_refused = [e.dataset_id for e in synced.errors]


class _Unreadable:
    """A dataset whose own record could not be read (None is a readable 'no revision')."""


UNREADABLE = _Unreadable()


async def find_drift(
    engine: AsyncEngine, settings: Settings, head: str | None
) -> tuple[list[str], list[str]]:
    """Active datasets the cache calls up to date, whose own version record says otherwise.

    Opens each one (bounded by MIGRATION_CONCURRENCY and CONNECT_TIMEOUT_S); one that cannot
    be read is listed as unreadable, never as drifted.
    """
    found = await load_targets(engine, is_cached_at_head(head))
    gate = asyncio.Semaphore(settings.migration_concurrency)

    async def one(target: DatasetTarget) -> str | _Unreadable | None:
        async with gate:
            return await _read_version(settings, target)

    versions = await asyncio.gather(*(one(f.target) for f in found))
    drifted = [
        f.target.dataset_id
        for f, v in zip(found, versions, strict=True)
        if not isinstance(v, _Unreadable) and v != f.cached_version
    ]
    unreadable = [
        f.target.dataset_id
        for f, v in zip(found, versions, strict=True)
        if isinstance(v, _Unreadable)
    ]
    return drifted, unreadable


async def _read_version(settings: Settings, target: DatasetTarget) -> str | _Unreadable | None:
    adapter = None
    dataset_id = target.dataset_id
    try:
        adapter = adapter_factory(target.provider)(target, settings)
        async with asyncio.timeout(settings.connect_timeout_s):
            return as_revision(await adapter.read_version())
    except Exception as exc:  # one unreadable dataset must not stop the check
        log.warning(
            "Check: dataset=%s name=%s version unreadable (%s).",
            dataset_id,
            quoted_name(target.name),
            type(exc).__name__,
        )
        return UNREADABLE
    finally:
        if adapter is not None:
            await _close_quietly(adapter)


async def _close_quietly(adapter: Any) -> None:
    try:
        await adapter.close()
    except Exception:
        log.debug("Check: closing an adapter failed.", exc_info=True)


def log_report(report: CheckReport) -> None:
    """One summary line; one more naming the drifted datasets (they need a person's look)."""
    attention = (
        report.needs_run
        or report.stale_runs
        or report.settings_problems
        or report.quarantined
        or report.source_refused
        or report.source_error
    )
    level = logging.WARNING if attention else logging.INFO
    log.log(
        level,
        "Scheduled check: control plane %s (head %s)%s; %d dataset(s) pending, %d drifted, "
        "%d unreadable, %d quarantined; %d stale run(s) failed; run in progress: %s; action=%s "
        "enqueued=%s",
        report.relational_current,
        report.relational_head,
        " BEHIND" if report.relational_behind else "",
        len(report.pending),
        len(report.drifted),
        len(report.unreadable),
        len(report.quarantined),
        len(report.stale_runs),
        report.run_in_progress or "none",
        report.action,
        report.enqueued_run or "none",
    )
    if report.quarantined:
        log.warning(
            "Scheduled check: quarantined dataset(s) (left out of runs until `migrator datasets "
            "release`): %s",
            ", ".join(report.labels("quarantined")),
        )
    for problem in report.settings_problems:
        log.warning("Scheduled check: settings: %s", problem)
    if report.source_refused:
        log.warning(
            "Scheduled check: the dataset source returned %d row(s) that were refused: %s",
            len(report.source_refused),
            ", ".join(report.shown_ids("source_refused")),
        )
    if report.drifted:
        log.warning(
            "Scheduled check: drifted dataset(s) (own record disagrees with the cache): %s",
            ", ".join(report.labels("drifted")),
        )
