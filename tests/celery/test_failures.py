"""Workers that die or run out of time never leave a run hanging.

The bound for a worker child killed with SIGKILL mid-dataset: its message goes back to the queue
at once (acks_late + task_reject_on_worker_lost) and the next delivery waits at most one
DATASET_LOCK_TTL_S for the dead child's dataset lock to lapse; a dataset whose deliveries keep
dying is recorded failed after DATASET_MAX_ATTEMPTS of them. So the run finishes within
DATASET_MAX_ATTEMPTS x (DATASET_LOCK_TTL_S + the dataset's own time) of the first kill.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.fake_adapters import scripted_url
from tests.celery.helpers import received
from tests.support.processes import ServiceProcess, wait_until
from tests.support.rows import run_rows, runs

# Judged against wall-clock bounds: run alone, not beside another pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]
LOCK_TTL_S = 2.0  # DATASET_LOCK_TTL_S in the Celery tests' environment


def test_child_killed_mid_dataset_is_redelivered_and_the_run_finishes(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    state = tmp_path / "victim"
    victim = celery_env.add_dataset(
        "victim", provider="scripted", url=scripted_url(state, sleep_s=60, sleep_attempts=1)
    )
    others = [celery_env.add_dataset(name) for name in ("bystander-1", "bystander-2")]
    worker = start_worker(concurrency=1)
    waiting = cli.popen("enqueue", "--trigger", "deploy", "--wait", "--timeout", "60")

    pid = int(wait_until(lambda: _read(state / "attempt-1.pid"), 40, "the first attempt"))
    assert pid in {child.pid for child in worker.children()}
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = waiting.communicate(timeout=60)
    finished_s = time.monotonic() - killed_at

    assert waiting.returncode == 0, err
    assert "succeeded (deploy)" in out
    # Redelivery, one lock TTL for the dead child's lock, a fresh pool child, the work itself.
    assert finished_s < LOCK_TTL_S + 15
    (run,) = runs(celery_env.settings)
    rows = run_rows(celery_env.settings, run["id"])
    assert rows[victim]["status"] == "succeeded"
    assert rows[victim]["attempts"] == 2
    assert {rows[d]["status"] for d in others} == {"succeeded"}
    log = worker.log()
    assert re.search(rf"Process '\S+' pid:{pid} exited with 'signal 9 \(SIGKILL\)'", log)
    assert f"Run {run['id']} dataset={victim}: attempt 2; the earlier one never finished" in log


def test_dataset_whose_worker_always_dies_is_failed_after_max_attempts(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    state = tmp_path / "poison"
    poison = celery_env.add_dataset(
        "poison", provider="scripted", url=scripted_url(state, kill_attempts=99)
    )
    healthy = celery_env.add_dataset("healthy")
    worker = start_worker(concurrency=2, DATASET_MAX_ATTEMPTS=2)

    result = cli.run("enqueue", "--wait", "--timeout", "90")

    assert result.returncode == 2, result.stderr
    assert (
        f"failed: poison ({poison}): AttemptsExhaustedError: dataset {poison}: 2 earlier "
        "attempt(s) started and never finished (worker process killed or lost); not trying again"
    ) in result.stdout
    assert sorted(p.name for p in state.glob("attempt-*.pid")) == ["attempt-1.pid", "attempt-2.pid"]
    (run,) = runs(celery_env.settings)
    rows = run_rows(celery_env.settings, run["id"])
    assert (rows[poison]["status"], rows[poison]["attempts"]) == ("failed", 2)
    assert rows[healthy]["status"] == "succeeded"
    assert received(worker.log(), "tasks.migrate_dataset") == 4  # 2 killed, 1 refused, 1 healthy


def test_subtask_past_its_soft_time_limit_is_recorded_timed_out(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    state = tmp_path / "slow"
    slow = celery_env.add_dataset(
        "slow", provider="scripted", url=scripted_url(state, sleep_s=60, sleep_attempts=9)
    )
    quick = celery_env.add_dataset("quick")
    worker = start_worker(DATASET_SOFT_TIME_LIMIT_S=3, DATASET_TIME_LIMIT_S=10)

    result = cli.run("enqueue", "--wait", "--timeout", "60")

    assert result.returncode == 2, result.stderr
    assert (
        f"timed_out: slow ({slow}): SoftTimeLimitExceeded: exceeded DATASET_SOFT_TIME_LIMIT_S=3"
    ) in result.stdout
    (run,) = runs(celery_env.settings)
    rows = run_rows(celery_env.settings, run["id"])
    assert rows[slow]["status"] == "timed_out"
    assert 2_800 <= rows[slow]["duration_ms"] < 10_000  # measured from the task's own start
    assert rows[quick]["status"] == "succeeded"
    assert (state / "cancelled-1").exists()  # the coroutine was cancelled, not left running
    log = worker.log()
    assert "Soft time limit (3.0s) exceeded for tasks.migrate_dataset" in log
    assert f'dataset={slow} name="slow" status=timed_out step=migrate' in log
    assert "Hard time limit" not in log


def test_subtask_killed_at_the_hard_time_limit_still_lets_the_run_finish(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    # block_s never yields to the event loop, so the soft limit cannot cancel it.
    stuck = celery_env.add_dataset(
        "stuck", provider="scripted", url=scripted_url(tmp_path / "stuck", block_s=60)
    )
    quick = celery_env.add_dataset("quick")
    worker = start_worker(DATASET_SOFT_TIME_LIMIT_S=2, DATASET_TIME_LIMIT_S=5)

    result = cli.run("enqueue", "--wait", "--timeout", "60")

    assert result.returncode == 2, result.stderr
    (run,) = runs(celery_env.settings)
    rows = run_rows(celery_env.settings, run["id"])
    assert rows[stuck]["status"] == "failed"
    assert rows[stuck]["error"].startswith(f"NoOutcomeError: dataset {stuck}: no outcome")
    assert rows[quick]["status"] == "succeeded"
    log = worker.log()
    assert "Hard time limit (5.0s) exceeded for tasks.migrate_dataset" in log
    assert f"Run {run['id']}: the chord failed; finishing the run from its records." in log


def _read(path: Path) -> str | None:
    try:
        return path.read_text() or None
    except FileNotFoundError:
        return None
