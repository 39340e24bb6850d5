"""Runs through a real worker: every dataset, one broken dataset and its retry, a failing
relational step, nothing to do, a subset and --verify."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from migrator.constants import RUN_LOCK_KEY
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import failing_migrations, json_out, parent_result, received
from tests.support.migrations import control_plane_head
from tests.support.processes import ServiceProcess
from tests.support.revisions import HEAD as HEAD_VERSION
from tests.support.rows import cached_versions, run_rows, runs

pytestmark = pytest.mark.slow
WAIT = ("--wait", "--timeout", "60")


@pytest.mark.parametrize("control_plane_kind", ["sqlite", "postgresql"])
def test_deploy_trigger_migrates_every_dataset(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    redis_admin: redis.Redis,
    pg_database: Callable[[], str],
    control_plane_kind: str,
) -> None:
    if control_plane_kind == "postgresql":
        celery_env.configure(DATABASE_URL=pg_database())
        celery_env.upgrade()
    names = ("articles", "tickets", "docs")
    ids = [celery_env.add_dataset(name) for name in names]
    worker = start_worker()

    result = cli.run("enqueue", "--trigger", "deploy", *WAIT, "--json")

    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    run_id = summary["run_id"]
    assert summary["status"] == "succeeded"
    assert summary["counts"] == {"succeeded": 3, "total": 3}
    assert sorted((d["dataset_id"], d["name"]) for d in summary["datasets"]) == sorted(
        zip(ids, names, strict=True)
    )
    assert f"run {run_id}: enqueued (trigger deploy)" in result.stderr
    assert f"run {run_id}: 3/3 datasets done, 0 failed" in result.stderr
    (run,) = runs(celery_env.settings)
    assert (run["id"], run["trigger"], run["status"]) == (run_id, "deploy", "succeeded")
    assert run["celery_task_id"] == run_id
    assert run["relational_after"] == control_plane_head()
    rows = run_rows(celery_env.settings, run_id)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert all(r["attempts"] == 1 and r["started_at"] and r["finished_at"] for r in rows.values())
    assert cached_versions(celery_env.settings) == dict.fromkeys(ids, HEAD_VERSION)
    log = worker.log()
    assert received(log, "tasks.migrate_dataset") == 3
    for dataset_id, name in zip(ids, names, strict=True):
        succeeded = f'dataset={dataset_id} name="{name}" status=succeeded'
        assert f"{succeeded} version=None->{HEAD_VERSION}" in log
    head = control_plane_head()
    assert (
        f"Run {run_id} succeeded: relational {head} -> {head}; datasets total=3 succeeded=3" in log
    )
    assert redis_admin.exists(RUN_LOCK_KEY) == 0
    # The chord body answered the parent's id, with counts only: small at any run size.
    answer = parent_result(celery_env, run_id)
    assert (answer["run_id"], answer["status"], answer["counts"]) == (
        run_id,
        "succeeded",
        summary["counts"],
    )
    assert answer["datasets"] == [] and answer["failed_ids"] == []
    assert len(json.dumps(answer)) < 1024


def test_one_broken_dataset_fails_alone_and_retry_failed_takes_only_it(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli
) -> None:
    good = [celery_env.add_dataset(name) for name in ("good-1", "good-2", "good-3")]
    broken = celery_env.add_dataset("broken")
    broken_path = Path(celery_env.settings.vector_db_url) / broken
    broken_path.parent.mkdir(parents=True, exist_ok=True)
    broken_path.write_text("a file where the dataset directory should be")
    worker = start_worker()

    result = cli.run("enqueue", "--trigger", "deploy", *WAIT)

    assert result.returncode == 2, result.stderr
    found = re.search(r"^run (\S+): partial \(deploy\)", result.stdout, re.MULTILINE)
    assert found, result.stdout
    run_id = found[1]
    assert f"failed: broken ({broken}): BadDatasetURLError: lancedb path {broken_path}" in (
        result.stdout
    )
    assert "is not a directory" in result.stdout
    rows = run_rows(celery_env.settings, run_id)
    assert {d: rows[d]["status"] for d in good} == dict.fromkeys(good, "succeeded")
    assert rows[broken]["status"] == "failed"
    log = worker.log()
    assert f"Run {run_id} partial:" in log  # the chord body ran
    assert f"Run {run_id}: dataset={broken} (broken) status=failed error=BadDatasetURLError" in log
    assert f'dataset={broken} name="broken" status=failed step=' in log
    answer = parent_result(celery_env, run_id)  # the chord body's result: ids, and names
    assert (answer["failed_ids"], answer["failed_names"]) == ([broken], {broken: "broken"})
    assert len(json.dumps(answer)) < 1024

    broken_path.unlink()
    retry = cli.run("enqueue", "--retry-failed", run_id, *WAIT, "--json")

    assert retry.returncode == 0, retry.stderr
    summary = json_out(retry)
    assert summary["counts"] == {"succeeded": 1, "total": 1}
    assert [d["dataset_id"] for d in summary["datasets"]] == [broken]
    retry_run = next(r for r in runs(celery_env.settings) if r["id"] == summary["run_id"])
    assert retry_run["options"]["retry_of"] == run_id
    assert cached_versions(celery_env.settings)[broken] == HEAD_VERSION


def test_relational_failure_records_failed_run_and_sends_no_subtask(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    tmp_path: Path,
    redis_admin: redis.Redis,
) -> None:
    celery_env.add_dataset("untouched")
    ini = failing_migrations(tmp_path / "alembic-broken", "column clash in 0004")
    worker = start_worker(ALEMBIC_CONFIG=ini)

    result = cli.run("enqueue", "--trigger", "deploy", *WAIT)

    assert result.returncode == 1, result.stderr
    assert "RuntimeError: column clash in 0004" in result.stdout
    (run,) = runs(celery_env.settings)
    assert run["status"] == "failed"
    assert run["error"].startswith("MigrationError: alembic upgrade head failed (exit 1)")
    assert run_rows(celery_env.settings, run["id"]) == {}
    log = worker.log()
    assert f"Run {run['id']} failed in the relational step; no dataset was touched" in log
    assert received(log, "tasks.migrate_dataset") == 0
    assert received(log, "tasks.finish_run") == 0
    assert redis_admin.exists(RUN_LOCK_KEY) == 0


def test_zero_datasets_gives_an_empty_summary(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli
) -> None:
    worker = start_worker()

    enqueued = cli.run("enqueue", "--json")  # no --wait: the run id, at once
    assert enqueued.returncode == 0, enqueued.stderr
    first_id = json_out(enqueued)["run_id"]
    assert json_out(enqueued) == {"attached": False, "run_id": first_id}
    assert parent_result(celery_env, first_id)["counts"] == {"total": 0}

    result = cli.run("enqueue", *WAIT)

    assert result.returncode == 0, result.stderr
    assert "datasets: total=0 succeeded=0" in result.stdout
    assert "nothing pending" in result.stdout
    assert received(worker.log(), "tasks.migrate_dataset") == 0
    assert [(r["status"], r["total_count"]) for r in runs(celery_env.settings)] == [
        ("succeeded", 0)
    ] * 2


def test_subset_then_verify_then_unknown_id(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, redis_admin: redis.Redis
) -> None:
    a, b, c = (celery_env.add_dataset(name) for name in ("a", "b", "c"))
    start_worker()

    subset = cli.run("enqueue", "--dataset", a, "--dataset", b, *WAIT, "--json")

    assert subset.returncode == 0, subset.stderr
    assert {d["dataset_id"] for d in json_out(subset)["datasets"]} == {a, b}
    assert cached_versions(celery_env.settings) == {a: HEAD_VERSION, b: HEAD_VERSION, c: None}

    verify = cli.run("enqueue", "--verify", *WAIT, "--json")

    assert verify.returncode == 0, verify.stderr
    outcomes = {d["dataset_id"]: d for d in json_out(verify)["datasets"]}
    assert set(outcomes) == {a, b, c}  # every active dataset is opened, not only pending ones
    assert (outcomes[a]["version_before"], outcomes[a]["version_after"]) == (
        HEAD_VERSION,
        HEAD_VERSION,
    )
    assert (outcomes[c].get("version_before"), outcomes[c]["version_after"]) == (None, HEAD_VERSION)

    unknown = str(uuid.uuid4())
    refused = cli.run("enqueue", "--dataset", unknown, *WAIT)

    assert refused.returncode == 64
    assert refused.stderr.strip() == f"FAILED: unknown dataset id(s): {unknown}"
    assert redis_admin.exists(RUN_LOCK_KEY) == 0
    assert len(runs(celery_env.settings)) == 2


def test_single_user_mode_migrates_the_default_engine(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli
) -> None:
    celery_env.add_dataset("ignored-in-single-user-mode")
    celery_env.configure(ENABLE_BACKEND_ACCESS_CONTROL="false")
    worker = start_worker()

    result = cli.run("enqueue", *WAIT, "--json")

    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    assert summary["counts"] == {"succeeded": 1, "total": 1}
    (outcome,) = summary["datasets"]
    assert (outcome["dataset_id"], outcome["version_after"]) == ("default", HEAD_VERSION)
    assert (Path(celery_env.settings.vector_db_url) / "default").is_dir()
    succeeded = 'dataset=default name="default" status=succeeded'
    assert f"{succeeded} version=None->{HEAD_VERSION}" in worker.log()
