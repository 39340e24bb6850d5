"""Declaring heavy work: ``heavy_budget_s`` on a revision, ``heavy=``/``budget_s=`` on an index
build or a backfill; the chain's budget of a path; bad budgets refused naming the revision; the
limits a budget gives, and the settings that must grow for it (worker start, enqueue --wait)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.cli import main
from migrator.errors import EXIT_PARTIAL, WorkerConfigError
from migrator.relational import upgrade_to_head
from migrator.runs.heavy import heavy_limits, with_budget
from migrator.runs.inprocess import run_startup_migrations
from migrator.settings import Settings
from migrator.vector.revisions import load_chain
from migrator.vector.revisions.errors import (
    HeavyBudgetError,
    InvalidBudgetError,
)
from tests.celery.conftest import CeleryEnv, Cli
from tests.support.processes import BIN
from tests.support.revisions import HEAD
from tests.support.rows import runs
from tests.support.services import REDIS_BASE_URL, REDIS_DB
from worker.config import subtask_time_limit_s, validate_limits

MakeSettings = Callable[..., Settings]


def _revision(folder: Path, name: str, down: str, body: str, header: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        f'"""{name}"""\n{header}\nrevision = {name!r}\ndown_revision = {down!r}\n\n\n'
        f"def upgrade(op):\n    {body}\n"
    )


def _index(extra: str) -> str:
    return f'op.create_index("chunks", "embedding", kind="hnsw", name="ix_big"{extra})'


def _backfill(extra: str) -> str:
    return f'op.backfill("chunks", "payload", lambda b: [], columns=["id"]{extra})'


def heavy_folder(root: Path, budget_s: float = 900) -> Path:
    """Over the packaged chain: a heavy index build (``budget_s``), a light column, a declared
    heavy revision (600 s), a heavy backfill (60 s) for pgvector only."""
    folder = root / "heavy"
    _revision(folder, "0004_index", HEAD, _index(f", heavy=True, budget_s={budget_s}"))
    _revision(folder, "0005_column", "0004_index", 'op.add_column("chunks", "n", "int64")')
    _revision(
        folder,
        "0006_declared",
        "0005_column",
        'op.add_column("chunks", "m", "int64")',
        "heavy_budget_s = 600",
    )
    _revision(
        folder,
        "0007_backfill",
        "0006_declared",
        _backfill(", heavy=True, budget_s=60"),
        'providers = ("pgvector",)',
    )
    return folder


def test_the_chain_says_which_revisions_are_heavy_and_the_budget_of_a_path(
    tmp_path: Path,
) -> None:
    chain = load_chain(heavy_folder(tmp_path))
    assert chain.heavy_revisions() == {
        "0004_index": 900.0,
        "0006_declared": 600.0,
        "0007_backfill": 60.0,
    }
    assert chain.max_heavy_budget_s() == 900.0
    revisions = {r.revision: r for r in chain.revisions}
    assert chain.heavy_budget_s(chain.upgrade_path(None)) == 900.0  # the largest on the way
    assert chain.heavy_budget_s(chain.upgrade_path("0004_index")) == 600.0
    assert chain.heavy_budget_s(chain.upgrade_path("0006_declared"), "pgvector") == 60.0
    assert chain.heavy_budget_s(chain.upgrade_path("0006_declared"), "lancedb") is None
    assert chain.heavy_budget_s([revisions["0005_column"]]) is None
    assert chain.heavy_budget_s(chain.upgrade_path(None, HEAD)) is None  # the packaged ones


@pytest.mark.parametrize("value", ["0", "-5", "'soon'", "True", "float('inf')"])
def test_a_revision_budget_that_is_not_positive_seconds_is_refused_naming_it(
    tmp_path: Path, value: str
) -> None:
    folder = tmp_path / "bad"
    _revision(folder, "0004_bad", HEAD, _index(""), f"heavy_budget_s = {value}")
    with pytest.raises(HeavyBudgetError) as raised:
        load_chain(folder)
    assert raised.value.revision == "0004_bad"
    assert "heavy_budget_s must be a positive number of seconds" in str(raised.value)
    assert "0004_bad.py" in str(raised.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_index(", heavy=True, budget_s=0"), "budget_s must be a positive number of seconds"),
        (_backfill(", budget_s=-1"), "budget_s must be a positive number of seconds"),
        (_index(", heavy='yes', budget_s=10"), "heavy must be True or False"),
    ],
)
def test_an_operation_budget_that_is_not_positive_seconds_is_refused_naming_it(
    tmp_path: Path, body: str, reason: str
) -> None:
    folder = tmp_path / "bad"
    _revision(folder, "0004_bad", HEAD, body)
    chain = load_chain(folder)
    with pytest.raises(InvalidBudgetError) as raised:
        chain.heavy_revisions()
    assert raised.value.revision == "0004_bad"
    assert reason in str(raised.value)


def test_a_heavy_operation_without_any_budget_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    _revision(folder, "0004_bad", HEAD, _index(", heavy=True"))
    with pytest.raises(HeavyBudgetError) as raised:
        load_chain(folder).heavy_revisions()
    assert raised.value.revision == "0004_bad"
    assert "is heavy but has no budget: give it budget_s=SECONDS" in str(raised.value)

    # The revision's own declaration is its operations' budget.
    _revision(folder, "0004_bad", HEAD, _index(", heavy=True"), "heavy_budget_s = 30")
    assert load_chain(folder).heavy_revisions() == {"0004_bad": 30.0}


def test_a_budget_gives_the_dataset_its_limits(make_settings: MakeSettings) -> None:
    settings = make_settings(
        DATASET_TIMEOUT_S=300, DATASET_SOFT_TIME_LIMIT_S=240, DATASET_TIME_LIMIT_S=300
    )
    limits = heavy_limits(settings, 900)
    assert (limits.run_s, limits.soft_s, limits.hard_s) == (900, 1800, 1860)
    assert heavy_limits(settings, 60).run_s == 300  # never less than a light dataset gets
    assert with_budget(settings, 900).dataset_timeout_s == 900  # what its adapter sees
    assert with_budget(settings, None) is settings


def test_a_budget_past_the_visibility_timeout_stops_the_worker_config_naming_what_must_grow(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    folder = heavy_folder(tmp_path, budget_s=900)
    settings = make_settings(VECTOR_MIGRATIONS=folder, REDIS_VISIBILITY_TIMEOUT_S=1500)
    with pytest.raises(WorkerConfigError) as raised:
        validate_limits(settings)
    assert str(raised.value) == (
        "revision 0004_index declares a heavy budget of 900s: its subtask's limits are soft "
        "1800s / hard 1860s (twice the budget, room for one heavy dataset ahead on its server), "
        "so REDIS_VISIBILITY_TIMEOUT_S (1500) must grow above 1860; otherwise Redis hands the "
        "live heavy task to a second worker"
    )
    grown = make_settings(VECTOR_MIGRATIONS=folder, REDIS_VISIBILITY_TIMEOUT_S=2000)
    validate_limits(grown)
    assert subtask_time_limit_s(grown) == 1860  # how long the errback waits for it


def test_result_expiry_shorter_than_a_heavy_subtask_is_refused(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(
        VECTOR_MIGRATIONS=heavy_folder(tmp_path, budget_s=900),
        REDIS_VISIBILITY_TIMEOUT_S=4000,
        RESULT_EXPIRES_S=5000,
    )
    with pytest.raises(
        WorkerConfigError, match=r"RESULT_EXPIRES_S \(5000\) must grow to at least 5460"
    ):
        validate_limits(settings)


def test_a_worker_does_not_start_when_a_budget_outgrows_its_limits(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    make_settings(
        VECTOR_MIGRATIONS=heavy_folder(tmp_path, budget_s=900), REDIS_VISIBILITY_TIMEOUT_S=1500
    )
    result = subprocess.run(
        [str(BIN / "celery"), "-A", "worker", "worker"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "REDIS_VISIBILITY_TIMEOUT_S (1500) must grow above 1860" in result.stderr


def test_a_deploy_hook_is_told_up_front_when_its_timeout_is_shorter_than_a_budget(
    celery_env: CeleryEnv, cli: Cli, tmp_path: Path
) -> None:
    celery_env.configure(VECTOR_MIGRATIONS=heavy_folder(tmp_path, budget_s=900))
    dataset_id = celery_env.add_dataset(
        "big", provider="pgvector", url="postgresql://127.0.0.1:5999/big"
    )
    # No worker: the run is sent and the hook gives up after its timeout, as it said it would.
    result = cli.run("enqueue", "--wait", "--timeout", "1", "--no-progress")
    assert result.returncode == 4, result.stderr
    warning = result.stderr.splitlines()[0]
    assert warning == (
        f"WARNING: 1 heavy dataset(s) in this run; dataset {dataset_id} has a budget of 900s "
        "(up to 1800s on a worker behind another heavy build), longer than --timeout 1: the "
        "wait would end (exit 4) while the run goes on; give --timeout 1800 or more"
    )


def test_migrator_check_names_the_setting_a_budget_needs_grown(
    make_settings: MakeSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_settings(
        VECTOR_MIGRATIONS=heavy_folder(tmp_path, budget_s=900),
        REDIS_VISIBILITY_TIMEOUT_S=1500,
        REDIS_URL=f"{REDIS_BASE_URL}/{REDIS_DB}",
    )
    assert main(["check", "--no-verify"]) == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert "settings: revision 0004_index declares a heavy budget of 900s" in out
    assert "REDIS_VISIBILITY_TIMEOUT_S (1500) must grow above 1860" in out


def test_a_run_refuses_a_bad_budget_before_any_dataset_is_touched(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    _revision(folder, "0004_bad", HEAD, _index(", heavy=True, budget_s=-1"))
    settings = make_settings(VECTOR_MIGRATIONS=folder)
    asyncio.run(upgrade_to_head(settings))
    with pytest.raises(InvalidBudgetError, match="revision '0004_bad'"):
        asyncio.run(run_startup_migrations(settings=settings))
    [run] = runs(settings)
    assert run["status"] == "failed"
    assert "budget_s must be a positive number of seconds, got -1" in run["error"]
