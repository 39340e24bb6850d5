"""Processes killed with SIGKILL: a whole worker mid-run, the parent task while it sends the
subtasks, and a migration between two vector schema steps.

The bound for a whole worker killed mid-run (main process and pool together, then started
again): the messages it held are unacknowledged, and Redis hands them out again only after
REDIS_VISIBILITY_TIMEOUT_S, so the run itself does not complete before then. It stops making
progress; the scheduled check finds it stale after RUN_STALE_AFTER_S, marks it failed, frees the
run lock and — with MIGRATION_CHECK_ACTION=enqueue — starts a run for what is still pending. So
every dataset is at head within RUN_STALE_AFTER_S + MIGRATION_CHECK_INTERVAL_S + the resumed
run's own time of the kill. Measured here with 6 s and 1 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from migrator.constants import QUEUE_NAME, TASK_MIGRATE_DATASET, TASK_MIGRATE_RUN
from tests.faults.conftest import Scenario
from tests.faults.world import HEAD_VERSION, World
from tests.support.environment import PROJECT_ROOT
from tests.support.processes import wait_until

# Judged against wall-clock bounds: run alone, not beside another pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

STALE_AFTER_S = 6
CHECK_INTERVAL_S = 1
# Limits that nest under the short staleness bound (the worker checks they do).
SHORT_LIMITS = {
    "RUN_STALE_AFTER_S": STALE_AFTER_S,
    "DATASET_SOFT_TIME_LIMIT_S": 3,
    "DATASET_TIME_LIMIT_S": 5,
}


def _received(log: str, task: str) -> int:
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] received", log))


def test_whole_worker_killed_mid_run_then_started_again(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Whole worker SIGKILLed mid-run, then started again",
        "SIGKILL to the worker's process group (main process and both pool children) while "
        "two datasets migrate; a new worker and beat started at once",
    )
    world.configure(
        **SHORT_LIMITS,
        MIGRATION_CHECK_INTERVAL_S=CHECK_INTERVAL_S,
        MIGRATION_CHECK_ACTION="enqueue",
    )
    server = world.vector_server("vectors-1")
    world.add_pgvector(server, 10)
    world.add_lancedb(2)
    for i in range(6):
        world.add_probe(f"slow-{i}", sleep_s=1.5)
    first_worker = world.start_worker(concurrency=2)
    started = world.cli("enqueue", "--trigger", "deploy")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    wait_until(lambda: any((world.root / "probes").glob("*/entered")), 30, "a dataset in flight")

    first_worker.kill()
    killed_at = time.monotonic()
    world.start_worker(concurrency=2)
    world.start_beat()

    def resumed() -> dict[str, object] | None:
        later = [r for r in world.runs() if r["id"] != run_id and r["status"] == "succeeded"]
        return later[-1] if later else None

    resume_run = wait_until(resumed, STALE_AFTER_S + CHECK_INTERVAL_S + 60, "a resumed run")
    resolved_s = time.monotonic() - killed_at
    stale = wait_until(
        lambda: next(r for r in world.runs() if r["id"] == run_id)["status"] == "failed",
        30,
        "the killed run marked stale",
    )

    lost = world.lost()
    scenario.lost = len(lost)
    assert stale
    killed_run = next(r for r in world.runs() if r["id"] == run_id)
    assert killed_run["error"].startswith(f"StaleRunError: run {run_id} made no progress for")
    assert resume_run["trigger"] == "beat"
    unfinished = {
        d for d, row in world.run_rows(run_id).items() if row["status"] in ("pending", "running")
    }
    assert unfinished, "the kill left nothing unfinished: it did not land mid-run"
    assert unfinished <= set(world.run_rows(str(resume_run["id"])))
    assert lost == []
    assert world.at_head() == []
    assert resolved_s < STALE_AFTER_S + CHECK_INTERVAL_S + 20
    scenario.outcome = (
        f"the run did not complete (its {len(unfinished)} unacknowledged datasets wait for "
        f"REDIS_VISIBILITY_TIMEOUT_S); the scheduled check marked it stale and resumed them "
        f"in a beat run: all at head {resolved_s:.1f} s after the kill (bound "
        f"RUN_STALE_AFTER_S={STALE_AFTER_S} + MIGRATION_CHECK_INTERVAL_S={CHECK_INTERVAL_S} "
        "+ the resumed run)"
    )


def test_parent_killed_while_sending_subtasks(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Parent killed while sending subtasks",
        "SIGKILL to the pool process running tasks.migrate_run once 30 of its 404 subtasks "
        "are queued",
    )
    world.configure(**SHORT_LIMITS)
    server = world.vector_server("vectors-1")
    world.add_pgvector(server, 4)
    probes = world.add_probes("fan", 400, sleep_s=0.02)
    total = 404
    worker = world.start_worker(concurrency=4)
    redis_client = world.redis_client()
    started = world.cli("enqueue", "--trigger", "deploy")
    run_id = started.stdout.strip()
    parent_pid = world.task_pid(TASK_MIGRATE_RUN, run_id)

    deadline = time.monotonic() + 60
    while redis_client.llen(QUEUE_NAME) < 30 and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(parent_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    redis_client.close()
    hook = world.cli("enqueue", "--trigger", "deploy", "--wait", "--timeout", "120", "--json")

    lost = world.lost()
    scenario.lost = len(lost)
    assert hook.returncode == 0, hook.stderr
    summary = json.loads(hook.stdout)
    assert (summary["run_id"], summary["status"]) == (run_id, "succeeded")
    assert summary["counts"]["succeeded"] == total
    assert [r["id"] for r in world.runs()] == [run_id]
    log = worker.log()
    assert f"pid:{parent_pid} exited with 'signal 9 (SIGKILL)'" in log
    resumed = re.search(rf"Run {run_id}: resuming with (\d+) dataset\(s\) not yet done", log)
    assert resumed, "the parent was not redelivered"
    sent_before_kill = _received(log, TASK_MIGRATE_DATASET) - int(resumed.group(1))
    assert 0 < sent_before_kill < total, sent_before_kill
    # Every dataset migrated exactly once; copies sent twice reported the recorded outcome.
    entered = [len((world.probe_dir(p) / "entered").read_text().splitlines()) for p in probes]
    assert set(entered) == {1}
    assert not list((world.root / "probes").glob("*/overlap-*"))
    assert lost == []
    assert world.at_head() == []
    scenario.outcome = (
        f"parent redelivered; it had sent {sent_before_kill} of {total} subtasks and resumed "
        f"with {resumed.group(1)}; the run succeeded ({total}/{total}, each dataset migrated "
        f"once) {time.monotonic() - killed_at:.0f} s after the kill"
    )


def test_process_killed_between_two_vector_steps(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Killed between two vector schema steps",
        "`migrator run` (in-process runner, 3 at a time) SIGKILLs itself right after a "
        "dataset reports step 2 (LanceDB: before step 3; pgvector: its DDL-only steps commit "
        "together)",
    )
    server = world.vector_server("vectors-1")
    seeded = world.add_pgvector(server, 6) + world.add_lancedb(3)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.faults.crash_run", "2"],
        cwd=PROJECT_ROOT,
        env=world.environment(MIGRATION_CONCURRENCY=3),
        capture_output=True,
        text=True,
        timeout=120,
    )
    world.outputs.append(crashed.stdout + crashed.stderr)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    victim = re.search(r"killed after step 2 of (\S+)", crashed.stdout)
    assert victim
    # Right after the kill: rows intact everywhere, the victim recorded at exactly step 2. A
    # pgvector step and its version row commit together, so record = schema; LanceDB has no
    # transactions, so a dataset cut between a step's commit and its row may show the step
    # one ahead of its record (the documented window the next run repairs), never behind.
    at_kill = {c.dataset.id: c for c in world.check()}
    assert all(c.rows_intact and c.cached <= c.recorded for c in at_kill.values())
    assert [
        c.describe() for c in at_kill.values() if c.dataset.provider == "pgvector" and c.lost
    ] == []
    ahead = [c for c in at_kill.values() if c.actual == c.recorded + 1]
    assert {c.dataset.provider for c in ahead} <= {"lancedb"}
    assert all(c.actual in (c.recorded, c.recorded + 1) for c in at_kill.values())
    # The victim is whichever dataset reports step 2 first. On LanceDB that is exactly step 2;
    # on pgvector the packaged revisions are DDL only and commit in one transaction, so step 2
    # is reported once all of them committed together.
    hit = at_kill[victim.group(1)]
    expected = 2 if hit.dataset.provider == "lancedb" else HEAD_VERSION
    assert (hit.recorded, hit.actual) == (expected, expected), hit.describe()
    (killed_run,) = world.runs()
    assert killed_run["status"] == "running"  # no process is left to finish its record

    rerun = world.cli("run", "--json", "--no-progress")
    time.sleep(1.2)
    check = world.cli("check", "--no-verify", "--json", RUN_STALE_AFTER_S=1)

    lost = world.lost()
    scenario.lost = len(lost)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["status"] == "succeeded"
    # The rerun selects by the control plane's cache: a victim whose store reached head but
    # whose outcome was never recorded is migrated again (a no-op that succeeds).
    behind = [c for c in at_kill.values() if c.cached < HEAD_VERSION]
    assert summary["counts"]["succeeded"] == len(behind)
    assert lost == []
    assert world.at_head() == []
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["stale_runs"] == [killed_run["id"]]
    scenario.outcome = (
        f"left {len(behind)} of {len(seeded)} datasets not recorded at head, rows intact, pgvector "
        f"record = schema ({len(ahead)} LanceDB cut between a commit and its version row, the "
        "documented window); the next `migrator run` finished all; `migrator check` marked "
        "the killed run failed (stale)"
    )
