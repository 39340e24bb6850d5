"""Every trigger, status and state the control plane records, each as a ``StrEnum``.

The members are the strings stored in the tables, written in task results and printed by the
CLI; a ``StrEnum`` compares equal to its string, so rows read back as plain text still match.
"""

from __future__ import annotations

from enum import StrEnum


class Trigger(StrEnum):
    """What started a run."""

    DEPLOY = "deploy"
    BEAT = "beat"
    ADMIN = "admin"
    API = "api"


class RunStatus(StrEnum):
    """Where a run stands (``migration_runs.status``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    # A canary, a wave or the failure budget stopped it; its untouched datasets are deferred.
    HALTED = "halted"


class DatasetStatus(StrEnum):
    """One dataset's place in one run (``migration_run_datasets.status``); the final ones are
    its outcome."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    # Not attempted because the run halted; a re-run or --retry-failed selects it.
    DEFERRED = "deferred"


class DatasetState(StrEnum):
    """Whether a registered dataset takes part in runs (``dataset_databases.state``)."""

    ACTIVE = "active"
    PROVISIONING = "provisioning"
    QUARANTINED = "quarantined"


# A row without an outcome yet; every other status is final.
OPEN_STATUSES = (DatasetStatus.PENDING, DatasetStatus.RUNNING)
FINAL_STATUSES = (
    DatasetStatus.SUCCEEDED,
    DatasetStatus.FAILED,
    DatasetStatus.SKIPPED,
    DatasetStatus.TIMED_OUT,
    DatasetStatus.DEFERRED,
)
# The outcomes that need a person's look: counted as failed, listed, retried.
FINISHED_BADLY = (DatasetStatus.FAILED, DatasetStatus.TIMED_OUT)
# What `--retry-failed` picks up from a run: what finished badly, and what never finished.
RETRY_STATUSES = (*FINISHED_BADLY, DatasetStatus.DEFERRED, *OPEN_STATUSES)


def finished_badly(status: str) -> bool:
    """True for an outcome that failed or timed out."""
    return status in FINISHED_BADLY


def count_badly(counts: dict[str, int]) -> int:
    """How many datasets finished badly, from counts by status."""
    return sum(counts.get(status, 0) for status in FINISHED_BADLY)


def sql_values(members: type[StrEnum]) -> tuple[str, ...]:
    """The stored strings of an enum, for a CHECK constraint."""
    return tuple(member.value for member in members)
