"""What tasks return stays small: a dataset outcome under 1 KB, a run summary bounded."""

from __future__ import annotations

import json
import uuid

from migrator.constants import RESULT_FAILED_IDS_MAX
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
