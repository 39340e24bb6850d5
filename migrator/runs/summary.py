"""What a run reports: its summary and outcomes (small, JSON-ready, free of secrets), the log
lines that tell them, and their shape as a Celery task result."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from migrator.constants import (
    RESULT_ERROR_CHARS,
    RESULT_FAILED_IDS_MAX,
    RESULT_MAX_BYTES,
    RESULT_NAME_CHARS,
)
from migrator.settings import Settings
from migrator.states import DatasetStatus, RunStatus, finished_badly
from migrator.urls import escape_controls, redact
from migrator.vector.base import StepFailed

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 400


def quoted_name(name: str | None) -> str:
    """The name as one quoted, escaped token, so a log line stays one greppable line."""
    return f'"{escape_controls(name)}"' if name is not None else "?"


def dataset_label(dataset_id: str, name: str | None) -> str:
    """How a person sees a dataset: ``name (id)``, or the id alone when the name is unknown."""
    return f"{escape_controls(name)} ({dataset_id})" if name else dataset_id


def cut_name(name: str | None, max_chars: int) -> str | None:
    """A name shortened for a size-bound place (a Celery result); the id stays whole."""
    if name is None or len(name) <= max_chars:
        return name
    return name[: max_chars - 3] + "..."


@dataclass(frozen=True)
class DatasetOutcome:
    """One dataset's result in one run; small enough for a Celery result (well under 1 KB).

    Fields: ``dataset_id``; ``status`` (a final ``DatasetStatus``); ``version_before`` and
    ``version_after``, the vector schema versions when known; ``duration_ms``; ``error``
    (``ErrorClass: message``, secrets removed) and ``step`` (where it failed), when it failed;
    ``name``, the dataset's name when known; ``revision_failed``, True when the migration
    itself raised (not a connection error or a timeout: what counts toward quarantine);
    ``progress``, read from the run record, where its last long operation got (operation,
    phase, done, total, unit, updated_at).
    """

    dataset_id: str
    status: DatasetStatus
    version_before: str | None = None
    version_after: str | None = None
    duration_ms: int = 0
    error: str | None = None
    step: str | None = None
    name: str | None = None
    revision_failed: bool = False
    progress: dict[str, Any] | None = None

    @property
    def finished_badly(self) -> bool:
        return finished_badly(self.status)

    @property
    def label(self) -> str:
        return dataset_label(self.dataset_id, self.name)

    def to_dict(self, *, name_max_chars: int | None = None) -> dict[str, Any]:
        """The fields that are set, as JSON types; ``name_max_chars`` cuts the name short."""
        data = {k: v for k, v in asdict(self).items() if v is not None and v is not False}
        if name_max_chars is not None and self.name is not None:
            data["name"] = cut_name(self.name, name_max_chars)
        return data


@dataclass
class RunSummary:
    """What one run did, as ``run_startup_migrations()`` returns it and the run record holds it.

    Fields: ``run_id``; ``trigger`` (a ``Trigger`` value); ``status`` (``RunStatus``:
    succeeded, partial or failed once finished); ``relational_before`` and ``relational_after``,
    the control plane's Alembic revisions; ``counts`` by dataset status plus ``total``;
    ``datasets``, the ``DatasetOutcome`` of each dataset loaded; ``duration_s``; ``started_at``
    and ``finished_at`` (ISO 8601, UTC); ``error``, why the run failed as a whole;
    ``source_errors``, the rows an external DATASET_SOURCE returned that were refused (each
    ``dataset_id``, ``row``, ``error``; the first SOURCE_ERRORS_KEPT), which make a run that
    migrated everything else ``partial``.
    """

    run_id: str
    trigger: str
    status: RunStatus
    relational_before: str | None
    relational_after: str | None
    counts: dict[str, int] = field(default_factory=dict)
    datasets: list[DatasetOutcome] = field(default_factory=list)
    duration_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    source_errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, datasets: Literal["all", "failed"] = "all") -> dict[str, Any]:
        """The summary as JSON types; ``datasets='failed'`` keeps only the outcomes that need
        attention (large runs)."""
        data = asdict(self)
        kept = self.datasets
        if datasets == "failed":
            kept = [d for d in self.datasets if d.finished_badly]
        data["datasets"] = [d.to_dict() for d in kept]
        return data

    @property
    def ok(self) -> bool:
        """True when the run succeeded: every dataset it took is at head."""
        return self.status == RunStatus.SUCCEEDED


def describe_error(exc: BaseException, settings: Settings) -> str:
    """``ErrorClass: message``, secrets removed and cut short enough for a task result."""
    cause = exc.cause if isinstance(exc, StepFailed) else exc
    text = redact(f"{type(cause).__name__}: {cause}", settings.secrets())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def log_summary(summary: RunSummary) -> None:
    """One line per run: status, revisions, counts by outcome, duration."""
    counts = summary.counts
    log.info(
        "Run %s %s: relational %s -> %s; datasets total=%d succeeded=%d failed=%d "
        "timed_out=%d skipped=%d deferred=%d in %.2fs%s",
        summary.run_id,
        summary.status,
        summary.relational_before,
        summary.relational_after,
        counts.get("total", 0),
        counts.get(DatasetStatus.SUCCEEDED, 0),
        counts.get(DatasetStatus.FAILED, 0),
        counts.get(DatasetStatus.TIMED_OUT, 0),
        counts.get(DatasetStatus.SKIPPED, 0),
        counts.get(DatasetStatus.DEFERRED, 0),
        summary.duration_s,
        f" ({summary.error})" if summary.status == RunStatus.HALTED else "",
    )
    if summary.source_errors:
        log.error(
            "Run %s: the dataset source returned %d row(s) that were refused: %s",
            summary.run_id,
            len(summary.source_errors),
            "; ".join(f"{e['dataset_id']}: {e['error']}" for e in summary.source_errors[:5]),
        )


_OUTCOME_FIELDS = {f.name for f in fields(DatasetOutcome)}


def outcome_from_result(result: dict[str, Any]) -> DatasetOutcome | None:
    """The outcome a subtask returned; None for anything that is not one."""
    values = {k: v for k, v in result.items() if k in _OUTCOME_FIELDS}
    try:
        values["status"] = DatasetStatus(str(values.get("status")))
        return DatasetOutcome(**values)
    except (TypeError, ValueError):
        return None


def summary_result(summary: RunSummary, *, busy_run_id: str | None = None) -> dict[str, Any]:
    """A run summary as a task result: JSON, secret-free and under 1 KB at any run size.

    Counts and the first failed dataset ids only; callers read the outcomes themselves from the
    control plane, which holds every one.
    """
    data = summary.to_dict(datasets="failed")
    failed = [d for d in summary.datasets if d.finished_badly]
    data["datasets"] = []
    # The rows are in the run record; a result stays small.
    data["source_errors"] = []
    if summary.source_errors:
        data["source_error_count"] = len(summary.source_errors)
    data["failed_ids"] = [d.dataset_id for d in failed[:RESULT_FAILED_IDS_MAX]]
    if len(failed) > RESULT_FAILED_IDS_MAX:
        data["failed_ids_not_shown"] = len(failed) - RESULT_FAILED_IDS_MAX
    if data.get("error") and len(data["error"]) > RESULT_ERROR_CHARS:
        data["error"] = data["error"][: RESULT_ERROR_CHARS - 3] + "..."
    if busy_run_id is not None:
        data["busy_run_id"] = busy_run_id
    data["failed_names"] = {
        d.dataset_id: cut_name(d.name, RESULT_NAME_CHARS)
        for d in failed[:RESULT_FAILED_IDS_MAX]
        if d.name is not None
    }
    # Names are what a person reads, ids what a program needs: names give way to the bound.
    while data["failed_names"] and len(json.dumps(data)) >= RESULT_MAX_BYTES:
        data["failed_names"].popitem()
    # A dataset source's ids may be long (up to 255 characters): then fewer of them fit.
    while len(data["failed_ids"]) > 1 and len(json.dumps(data)) >= RESULT_MAX_BYTES:
        data["failed_ids"].pop()
        data["failed_ids_not_shown"] = len(failed) - len(data["failed_ids"])
    return data


def summary_from_result(data: dict[str, Any]) -> RunSummary:
    """The summary a task result (or ``--json`` output) carries, for printing."""
    outcomes = [outcome_from_result(d) for d in data.get("datasets", [])]
    return RunSummary(
        run_id=data["run_id"],
        trigger=data.get("trigger", "?"),
        status=RunStatus(data.get("status", RunStatus.FAILED)),
        relational_before=data.get("relational_before"),
        relational_after=data.get("relational_after"),
        counts=dict(data.get("counts") or {}),
        datasets=[o for o in outcomes if o is not None],
        duration_s=float(data.get("duration_s") or 0.0),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        error=data.get("error"),
        source_errors=list(data.get("source_errors") or []),
    )
