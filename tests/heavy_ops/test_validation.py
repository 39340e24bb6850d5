"""Bad resource values are refused at once, naming the operation or the setting and why;
good ones are recorded as given. LanceDB refuses pgvector's build settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from migrator.runs.dataset import revision_raised
from migrator.settings import Settings
from migrator.vector.base import StepFailed
from migrator.vector.revisions import Operations
from migrator.vector.revisions.errors import (
    IndexBuildInProgressError,
    InvalidOperationError,
    RevisionApplyError,
)
from migrator.vector.revisions.ops import Backfill, CreateIndex
from migrator.vector.revisions.resources import Resources


def make_op(provider: str = "pgvector") -> Operations:
    return Operations(
        revision="0042_heavy",
        provider=provider,
        dataset_id="d1",
        dataset_name="one",
        vector_dimension=8,
    )


def index(op: Operations, **kwargs: Any) -> None:
    op.create_index("docs", "embedding", kind="hnsw", **kwargs)


def backfill(op: Operations, **kwargs: Any) -> None:
    op.backfill("docs", "lang", lambda b: ["en"] * b.num_rows, columns=["id"], **kwargs)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda op: index(op, maintenance_work_mem="256"), "a number and a unit"),
        (lambda op: index(op, maintenance_work_mem="lots"), "a number and a unit"),
        (lambda op: index(op, maintenance_work_mem="256mb"), "a number and a unit"),
        (lambda op: index(op, maintenance_work_mem="512kB"), "between 1MB and 2TB"),
        (lambda op: index(op, maintenance_work_mem="3TB"), "between 1MB and 2TB"),
        (lambda op: index(op, maintenance_work_mem=256), "text like '256MB'"),
        (lambda op: index(op, parallel_workers=-1), "between 0 and 1024"),
        (lambda op: index(op, parallel_workers=True), "an integer >= 0"),
        (lambda op: index(op, parallel_workers=1.5), "an integer >= 0"),
        (lambda op: backfill(op, rate_limit_rows_s=-5), "a number >= 0"),
        (lambda op: backfill(op, rate_limit_rows_s="fast"), "a number >= 0"),
        (lambda op: backfill(op, batch_size=0), "positive integer"),
    ],
)
def test_bad_resources_are_refused(call: Callable[[Operations], None], reason: str) -> None:
    with pytest.raises(InvalidOperationError, match=reason) as refused:
        call(make_op())
    assert "0042_heavy" in str(refused.value)


def test_good_resources_are_recorded_and_win_over_settings() -> None:
    op = make_op()
    index(op, maintenance_work_mem=" 1 GB ", parallel_workers=0, concurrently=True)
    backfill(op, rate_limit_rows_s=250.5)
    backfill(op)
    built, limited, plain = op.recorded
    assert isinstance(built, CreateIndex) and isinstance(limited, Backfill)
    assert isinstance(plain, Backfill)
    defaults = Resources("64MB", 2, backfill_batch_rows=300, backfill_rate_limit_rows_s=10)
    assert defaults.index_settings(built.maintenance_work_mem, built.parallel_workers) == {
        "maintenance_work_mem": "1GB",
        "max_parallel_maintenance_workers": "0",
    }
    assert defaults.index_settings(None, None) == {
        "maintenance_work_mem": "64MB",
        "max_parallel_maintenance_workers": "2",
    }
    assert Resources().index_settings(None, None) == {}  # the server's own
    assert (
        defaults.rate_limit(limited.rate_limit_rows_s),
        defaults.batch_rows(limited.batch_size),
    ) == (250.5, 300)
    assert (defaults.rate_limit(plain.rate_limit_rows_s), defaults.batch_rows(10)) == (10, 10)


def test_lancedb_refuses_pgvector_build_settings() -> None:
    with pytest.raises(InvalidOperationError, match="pgvector options"):
        make_op("lancedb").create_index(
            "docs", "embedding", kind="ivf_pq", maintenance_work_mem="1GB"
        )


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"INDEX_MAINTENANCE_WORK_MEM": "1GiB"}, "INDEX_MAINTENANCE_WORK_MEM"),
        ({"INDEX_PARALLEL_WORKERS": "-1"}, "index_parallel_workers"),
        ({"BACKFILL_BATCH_ROWS": "0"}, "backfill_batch_rows"),
        ({"BACKFILL_RATE_LIMIT_ROWS_S": "-1"}, "backfill_rate_limit_rows_s"),
        ({"PROGRESS_INTERVAL_S": "0"}, "progress_interval_s"),
    ],
)
def test_bad_settings_are_refused_at_start(
    make_settings: Callable[..., Settings], env: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        make_settings(**env)


def test_settings_defaults(make_settings: Callable[..., Settings]) -> None:
    assert make_settings(INDEX_PARALLEL_WORKERS="").resources() == Resources(
        None, None, 1000, 0.0, 2.0, 60.0
    )


def test_a_live_build_elsewhere_is_no_failure_of_the_revision() -> None:
    """It never counts toward quarantine; a revision's own error still does."""
    live = IndexBuildInProgressError("ds_x", "ix", 4242, "building index: loading tuples", 60.0)
    wrapped = StepFailed("0002_index", RevisionApplyError("0002_index", "create_index(...)", live))
    assert not revision_raised(wrapped, "0002_index")
    own = RevisionApplyError("0002_index", "create_index(...)", ValueError("bad parameter"))
    assert revision_raised(StepFailed("0002_index", own), "0002_index")
