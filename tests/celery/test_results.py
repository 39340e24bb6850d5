"""What tasks return stays small: a dataset outcome under 1 KB, a run summary bounded."""

from __future__ import annotations

import json
import uuid

from migrator.constants import RESULT_FAILED_IDS_MAX, RESULT_NAME_CHARS
from migrator.datasets import MAX_NAME_CHARS
from migrator.runs.summary import (
    DatasetOutcome,
    RunSummary,
    describe_error,
    summary_from_result,
    summary_result,
)
from migrator.settings import Settings


def test_a_dataset_outcome_with_a_huge_error_is_under_one_kilobyte(settings: Settings) -> None:
    error = describe_error(RuntimeError("x" * 50_000), settings)
    outcome = DatasetOutcome(str(uuid.uuid4()), "failed", 0, 2, 299_999, error, "add_columns")

    assert len(json.dumps(outcome.to_dict())) < 1024


def test_a_huge_run_result_is_under_one_kilobyte_and_names_the_first_failures() -> None:
    succeeded = [DatasetOutcome(str(uuid.uuid4()), "succeeded", 0, 3) for _ in range(5000)]
    failed = [
        DatasetOutcome(str(uuid.uuid4()), "failed", error="E: " + "x" * 390) for _ in range(150)
    ]
    summary = RunSummary(
        "run-1",
        "deploy",
        "partial",
        "0003",
        "0003",
        {"total": 5150},
        succeeded + failed,
        error="RuntimeError: " + "y" * 1000,
    )

    data = summary_result(summary)

    assert len(json.dumps(data)) < 1024
    assert data["failed_ids"] == [d.dataset_id for d in failed[:RESULT_FAILED_IDS_MAX]]
    assert data["failed_ids_not_shown"] == 150 - RESULT_FAILED_IDS_MAX
    assert data["datasets"] == []
    assert summary_from_result(json.loads(json.dumps(data))).counts == {"total": 5150}


def test_a_subtask_result_cuts_a_long_name_and_keeps_the_whole_id(settings: Settings) -> None:
    error = describe_error(RuntimeError("x" * 50_000), settings)
    name = "n" * MAX_NAME_CHARS
    outcome = DatasetOutcome(str(uuid.uuid4()), "failed", 0, 2, 299_999, error, "add", name)

    data = outcome.to_dict(name_max_chars=RESULT_NAME_CHARS)

    assert len(json.dumps(data)) < 1024
    assert data["dataset_id"] == outcome.dataset_id
    assert data["name"] == "n" * (RESULT_NAME_CHARS - 3) + "..."


def test_a_run_result_names_its_first_failures_and_stays_under_one_kilobyte() -> None:
    failed = [
        DatasetOutcome(str(uuid.uuid4()), "failed", error="E: " + "x" * 390, name=f"ds-{i}" * 60)
        for i in range(150)
    ]
    summary = RunSummary("run-1", "deploy", "partial", "0003", "0003", {"total": 150}, failed)

    data = summary_result(summary)

    assert len(json.dumps(data)) < 1024
    assert data["failed_names"], "at least the first failures are named"
    for dataset_id, name in data["failed_names"].items():
        assert dataset_id in data["failed_ids"]
        assert len(name) <= RESULT_NAME_CHARS


def test_a_run_result_with_short_names_names_every_failure_it_lists() -> None:
    failed = [DatasetOutcome(str(uuid.uuid4()), "failed", name=f"tenant-{i}") for i in range(3)]
    summary = RunSummary("run-1", "deploy", "partial", "0003", "0003", {"total": 3}, failed)

    data = summary_result(summary)

    assert data["failed_names"] == {d.dataset_id: d.name for d in failed}
