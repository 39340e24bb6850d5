"""The scheduled check: finds pending and drifted datasets and stale runs; reports, or through
celery beat enqueues exactly one run (never overlapping the one in progress)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from migrator.constants import RUN_LOCK_KEY, TASK_SCHEDULED_CHECK
from migrator.locks.redis import LockRecord
from tests.celery.conftest import CeleryEnv
from tests.celery.fake_adapters import scripted_url
from tests.celery.helpers import received, record_idle_run
from tests.support.migrations import control_plane_head
from tests.support.processes import ServiceProcess, wait_until
from tests.support.revisions import HEAD as HEAD_VERSION
from tests.support.rows import cached_versions, run_rows, runs, set_cached_version
from worker import create_app

pytestmark = pytest.mark.slow

HEAD = control_plane_head()


def test_check_reports_pending_drifted_and_stale_without_enqueueing(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    tmp_path: Path,
    redis_admin: redis.Redis,
) -> None:
    state = tmp_path / "at-head"
    state.mkdir()
    (state / "version").write_text(HEAD_VERSION)
    at_head = celery_env.add_dataset("at-head", provider="scripted", url=scripted_url(state))
    set_cached_version(celery_env.settings, at_head, HEAD_VERSION)
    pending = celery_env.add_dataset("pending")
    drifted = celery_env.add_dataset("drifted")  # never migrated, but the cache claims head
    set_cached_version(celery_env.settings, drifted, HEAD_VERSION)
    dead_id = str(uuid.uuid4())
    record_idle_run(celery_env, dead_id, idle_s=3600)
    redis_admin.set(RUN_LOCK_KEY, LockRecord.new(dead_id, token=dead_id).to_json(), px=60_000)
    worker = start_worker(MIGRATION_CHECK_ACTION="report")

    app = create_app(celery_env.settings)
    try:
        report = app.send_task(TASK_SCHEDULED_CHECK).get(timeout=60)
    finally:
        app.close()

    assert (report["relational_current"], report["relational_head"]) == (HEAD, HEAD)
    assert report["pending"] == [pending]
    assert report["drifted"] == [drifted]
    assert report["unreadable"] == []
    assert report["stale_runs"] == [dead_id]
    assert report["run_in_progress"] is None  # the stale run's lock was freed
    assert (report["action"], report["enqueued_run"]) == ("report", None)
    (dead,) = runs(celery_env.settings)
    assert dead["status"] == "failed"
    assert dead["error"].startswith(f"StaleRunError: run {dead_id} made no progress for ")
    assert redis_admin.exists(RUN_LOCK_KEY) == 0
    log = worker.log()
    assert (
        f"Scheduled check: control plane {HEAD} (head {HEAD}); 1 dataset(s) pending, 1 drifted, "
        "0 unreadable, 0 quarantined; 1 stale run(s) failed; run in progress: none; "
        "action=report enqueued=none"
    ) in log
    assert f"drifted dataset(s) (own record disagrees with the cache): drifted ({drifted})" in log
    assert received(log, "tasks.migrate_run") == 0


def test_beat_enqueues_one_run_for_pending_and_drifted(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    start_beat: type[ServiceProcess],
) -> None:
    pending = celery_env.add_dataset("pending")
    drifted = celery_env.add_dataset("drifted")
    set_cached_version(celery_env.settings, drifted, HEAD_VERSION)
    celery_env.configure(MIGRATION_CHECK_ACTION="enqueue", MIGRATION_CHECK_INTERVAL_S=1)
    worker = start_worker()
    beat = start_beat()

    finished = wait_until(
        lambda: [r for r in runs(celery_env.settings) if r["status"] != "running"],
        60,
        "a finished run",
    )
    checks_before = worker.log().count("Scheduled check:")
    wait_until(
        lambda: worker.log().count("Scheduled check:") >= checks_before + 2, 30, "two more checks"
    )

    (run,) = runs(celery_env.settings)  # later checks found nothing to do: still one run
    assert run is not None and finished[0]["id"] == run["id"]
    assert (run["trigger"], run["status"], run["requested_by"]) == (
        "beat",
        "succeeded",
        "celery beat",
    )
    rows = run_rows(celery_env.settings, run["id"])
    assert set(rows) == {pending, drifted}
    assert rows[drifted]["version_before"] is None  # its own record, not the cache
    assert cached_versions(celery_env.settings) == {pending: HEAD_VERSION, drifted: HEAD_VERSION}
    log = worker.log()
    assert f"action=enqueue enqueued={run['id']}" in log
    assert f"Scheduled check: control plane {HEAD} (head {HEAD}); 0 dataset(s) pending" in log
    assert received(log, "tasks.migrate_run") == 1
    assert "Sending due task migration-check (tasks.scheduled_check)" in beat.log()
