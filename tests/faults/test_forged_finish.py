"""A forged chord body cannot end a live run.

While a deploy run migrates slow datasets on a real worker, ``tasks.finish_run`` is sent
straight to Redis for it with a made-up results list (every dataset "succeeded"), and once
more for a run id that is not a UUID. The run stays running, keeps its lock, the deploy hook
keeps waiting, and the run finishes from its own records when its subtasks do.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from migrator.constants import RUN_LOCK_KEY, TASK_FINISH_RUN
from tests.faults.conftest import Scenario
from tests.faults.world import Dataset, ServiceProcess, World
from worker import create_app

pytestmark = pytest.mark.slow


def test_a_forged_finish_message_does_not_end_a_live_run(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Forged chord body for a live run",
        "tasks.finish_run sent to Redis with a made-up all-succeeded results list while the "
        "run migrates; another with a run id that is not a UUID",
    )
    # 2 datasets of 8 s on 3 slots: the third slot handles the forged messages while both
    # datasets are still open (once all are final, finishing from the records is the right
    # thing to do, whoever asks).
    probes = world.add_probes("slow", 2, sleep_s=8)
    worker = world.start_worker(concurrency=3)
    hook = world.cli_popen("enqueue", "--trigger", "deploy", "--wait", "--timeout", "120", "--json")
    try:
        _forge_and_check(world, worker, hook, probes, scenario)
    finally:
        if hook.poll() is None:
            hook.kill()
        hook.communicate()


def _forge_and_check(
    world: World,
    worker: ServiceProcess,
    hook: subprocess.Popen[str],
    probes: list[Dataset],
    scenario: Scenario,
) -> None:
    worker.wait_for_log(r"tasks\.migrate_dataset\[")
    (run,) = world.runs()
    run_id = run["id"]
    forged_results = [
        {"dataset_id": p.id, "status": "succeeded", "version_before": 0, "version_after": 3}
        for p in probes
    ]
    sender = create_app(world.settings)
    sender.send_task(TASK_FINISH_RUN, args=(forged_results, run_id))
    sender.send_task(TASK_FINISH_RUN, args=(forged_results, "../not-a-uuid"))
    worker.wait_for_log(rf"Finish message for run {run_id} refused: 2 dataset\(s\)")
    worker.wait_for_log(r"the run id is not a UUID")

    (run,) = world.runs()
    assert run["status"] == "running"
    assert json.loads(world.redis_client().get(RUN_LOCK_KEY) or "{}").get("run_id") == run_id
    time.sleep(0.5)
    assert hook.poll() is None, "the deploy hook stopped waiting"

    stdout, stderr = hook.communicate(timeout=120)
    world.outputs += [stdout, stderr]
    assert hook.returncode == 0, stderr
    (run,) = world.runs()
    assert (run["status"], run["succeeded_count"]) == ("succeeded", 2)
    rows = world.run_rows(run_id)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    scenario.lost = len(world.lost(probes))
    scenario.outcome = (
        "both refused and logged; run kept running with its lock, deploy hook kept waiting; "
        "finished succeeded 2/2 from its records"
    )
    assert scenario.lost == 0
