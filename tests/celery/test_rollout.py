"""Canary, waves and the failure budget through a real worker, over a fleet of 200 datasets
that a bad revision breaks: the canary is its own chord whose body sends the rest.

A worker takes seconds to start and stop on a busy machine, so the canary, budget, retry and
waves runs share one (each run's own log lines are read apart); quarantine has its own, since
it needs QUARANTINE_AFTER_RUNS set before the worker starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.cli import main
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out, received
from tests.support.broken_adapter import register_fleet
from tests.support.processes import ServiceProcess
from tests.support.rows import run_rows

pytestmark = pytest.mark.slow
WAIT = ("--wait", "--timeout", "120", "--no-progress")
FLEET_SIZE = 200
WORKER_SLOTS = 4


def test_canary_budget_retry_and_waves_on_the_workers(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    fleet = register_fleet(celery_env.settings, tmp_path / "fleet", FLEET_SIZE, fail=1)
    worker = start_worker(concurrency=WORKER_SLOTS)

    canary = cli.run("enqueue", "--canary", "5", "--wave-size", "50", *WAIT, "--json")

    assert canary.returncode == 5, canary.stderr
    summary = json_out(canary)
    assert summary["status"] == "halted"
    assert summary["counts"] == {"failed": 5, "deferred": FLEET_SIZE - 5, "total": FLEET_SIZE}
    assert summary["error"] == "run halted: 5 of 5 dataset(s) of the canary did not succeed"
    assert len(fleet.touched()) == 5
    assert received(worker.log(), "tasks.migrate_dataset") == 5  # nothing else was even sent

    budget = cli.run("enqueue", "--max-failures", "10", *WAIT, "--json")

    assert budget.returncode == 5, budget.stderr
    halted = json_out(budget)
    rows = run_rows(celery_env.settings, halted["run_id"])
    attempted = [d for d, r in rows.items() if r["attempts"]]
    assert 10 <= len(attempted) <= 10 + WORKER_SLOTS
    assert fleet.attempts() == 5 + len(attempted)
    assert halted["counts"]["deferred"] == FLEET_SIZE - len(attempted)
    deferred = [r for r in rows.values() if r["status"] == "deferred"]
    assert all(r["error"].startswith("failure budget spent:") for r in deferred)
    assert all(r["attempts"] == 0 for r in deferred)

    fleet.behave(celery_env.settings)  # the fixed revision is deployed
    retried = cli.run("enqueue", "--retry-failed", halted["run_id"], *WAIT, "--json")

    assert retried.returncode == 0, retried.stderr
    assert json_out(retried)["counts"] == {"succeeded": FLEET_SIZE, "total": FLEET_SIZE}
    assert fleet.touched() == set(fleet.ids)

    # Waves after a good canary: 30 new datasets (the 200 are at head, so only these are
    # pending), one named canary plus 10% of them, then waves of 10.
    good = register_fleet(celery_env.settings, tmp_path / "fleet", 30, prefix="good")
    earlier, attempts = len(worker.log()), fleet.attempts()
    result = cli.run(
        "enqueue", "--canary-dataset", "good-0007", "--canary", "10%", "--wave-size", "10", *WAIT
    )

    assert result.returncode == 0, result.stderr
    assert good.touched() == set(good.ids) and fleet.attempts() == attempts
    log = worker.log()[earlier:]
    assert received(log, "tasks.migrate_dataset") == 30
    assert log.count("stage 0 passed; sending stage 1") == 1
    assert log.count("stage 2 passed; sending stage 3") == 1
    assert received(log, "tasks.finish_run") == 4


def test_quarantine_and_release_on_the_workers(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli, tmp_path: Path
) -> None:
    celery_env.configure(QUARANTINE_AFTER_RUNS=2)
    bad = register_fleet(celery_env.settings, tmp_path / "fleet", 2, prefix="bad", fail=1)
    down = register_fleet(celery_env.settings, tmp_path / "fleet", 1, prefix="down", outage=1)
    start_worker(concurrency=WORKER_SLOTS)

    for _ in range(2):
        assert cli.run("enqueue", *WAIT).returncode == 2
    check = cli.run("check", "--no-verify", "--json")

    assert check.returncode == 2, check.stderr
    assert json_out(check)["quarantined"] == bad.ids  # the outage's dataset is not there
    third = json_out(cli.run("enqueue", *WAIT, "--json"))
    assert set(run_rows(celery_env.settings, third["run_id"])) == set(down.ids)

    # Release touches the control plane only (its CLI is tested in tests/rollout): no worker,
    # so in this process rather than a second interpreter's start.
    assert main(["datasets", "release", bad.dirs[bad.ids[0]].name]) == 0
    bad.behave(celery_env.settings)
    fourth = json_out(cli.run("enqueue", *WAIT, "--json"))
    rows = run_rows(celery_env.settings, fourth["run_id"])
    assert set(rows) == {bad.ids[0], *down.ids}
    assert rows[bad.ids[0]]["status"] == "succeeded"
