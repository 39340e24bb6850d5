"""One run at a time across triggers: simultaneous triggers attach to one run; --no-attach and
--timeout; a run lock left by a run that is over does not block the next trigger."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from migrator.constants import RUN_LOCK_KEY
from migrator.locks.redis import LockRecord
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.fake_adapters import scripted_url
from tests.celery.helpers import json_out, received, record_idle_run
from tests.support.processes import ServiceProcess, wait_until
from tests.support.rows import run_rows, runs

# Judged against wall-clock bounds: run alone, not beside another pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_three_triggers_at_once_make_one_run_and_two_attach(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    tmp_path: Path,
    redis_admin: redis.Redis,
) -> None:
    # One slow dataset keeps the run open long enough for every trigger to find it.
    slow = celery_env.add_dataset(
        "slow",
        provider="scripted",
        url=scripted_url(tmp_path / "slow", sleep_s=10, sleep_attempts=1),
    )
    quick = celery_env.add_dataset("quick")
    worker = start_worker()

    triggers = [cli.popen("enqueue", "--trigger", "deploy", "--wait", "--json") for _ in range(3)]
    wait_until(lambda: (tmp_path / "slow" / "attempt-1.pid").exists(), 30, "the slow dataset")
    # Both started at once: on a loaded machine two CLI starts in a row (a few seconds each)
    # could outlast the slow dataset, and the impatient one would find the run finished.
    late = [
        cli.popen("enqueue", "--no-attach", "--wait"),
        cli.popen("enqueue", "--wait", "--timeout", "1"),
    ]
    busy, impatient = (_finished(p) for p in late)
    outputs = [t.communicate(timeout=60) for t in triggers]

    assert [t.returncode for t in triggers] == [0, 0, 0], outputs
    run_ids = {json.loads(out)["run_id"] for out, _ in outputs}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    errs = [err for _, err in outputs]
    assert sum(f"run {run_id}: enqueued (trigger deploy)" in e for e in errs) == 1
    attached = f"run {run_id}: already in progress (trigger deploy); attaching to it"
    assert sum(attached in e for e in errs) == 2
    assert len(runs(celery_env.settings)) == 1
    assert set(run_rows(celery_env.settings, run_id)) == {slow, quick}
    assert received(worker.log(), "tasks.migrate_run") == 1

    assert busy.returncode == 3
    assert busy.stderr.splitlines() == [
        f"FAILED: another migration run is in progress: {run_id}",
        f"run id: {run_id}",
    ]
    assert impatient.returncode == 4
    assert f"FAILED: run {run_id} still running after waiting 1s" in impatient.stderr
    assert f"run id: {run_id}" in impatient.stderr
    assert redis_admin.exists(RUN_LOCK_KEY) == 0


def _finished(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_lock_left_by_a_finished_run_is_cleared(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    redis_admin: redis.Redis,
) -> None:
    celery_env.add_dataset("only")
    start_worker()
    first = cli.run("enqueue", "--wait", "--json")
    assert first.returncode == 0, first.stderr
    finished_id = json_out(first)["run_id"]
    # As if the chord body had died between recording the run and releasing the lock.
    redis_admin.set(
        RUN_LOCK_KEY, LockRecord.new(finished_id, token=finished_id).to_json(), px=60_000
    )

    second = cli.run("enqueue", "--verify", "--wait", "--json")

    assert second.returncode == 0, second.stderr
    assert json_out(second)["run_id"] != finished_id
    assert f"run {json_out(second)['run_id']}: enqueued" in second.stderr


def test_stale_running_run_is_failed_and_its_lock_taken_over(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    redis_admin: redis.Redis,
) -> None:
    celery_env.add_dataset("only")
    start_worker()
    # A run whose workers all died: recorded running, idle far past RUN_STALE_AFTER_S, its
    # lock still there.
    dead_id = str(uuid.uuid4())
    record_idle_run(celery_env, dead_id, idle_s=3600)
    redis_admin.set(RUN_LOCK_KEY, LockRecord.new(dead_id, token=dead_id).to_json(), px=60_000)

    result = cli.run("enqueue", "--wait", "--json")

    assert result.returncode == 0, result.stderr
    new_id = json_out(result)["run_id"]
    assert new_id != dead_id
    assert f"run {new_id}: enqueued" in result.stderr
    dead_run = next(r for r in runs(celery_env.settings) if r["id"] == dead_id)
    assert dead_run["status"] == "failed"
    assert re.match(
        rf"StaleRunError: run {dead_id} made no progress for 36\d\ds", dead_run["error"]
    )
