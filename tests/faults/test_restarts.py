"""Redis restarted, and every control-plane connection cut, while a run is in flight: the run
finishes on its own, the deploy hook waiting on it gets its answer, and nothing is lost."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.faults.conftest import Scenario
from tests.faults.world import Dataset, World
from tests.support.processes import wait_until

# Outages shorter than the lock TTL, waited out on the clock: run alone, not beside another
# pytest worker (once there, the deploy hook outlived its 120 s).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

# Probe datasets that sleep this long, so migrations are in flight when the fault lands.
IN_FLIGHT_S = (0.5, 1.0, 1.5, 2.0)


def _seed(world: World) -> list[Dataset]:
    server = world.vector_server("vectors-1")
    seeded = world.add_pgvector(server, 24) + world.add_lancedb(4)
    seeded += [world.add_probe(f"in-flight-{i}", sleep_s=s) for i, s in enumerate(IN_FLIGHT_S)]
    return seeded


def _one_succeeded_run(world: World, hook_out: str, total: int) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(hook_out)
    assert (summary["status"], summary["counts"]["succeeded"]) == ("succeeded", total)
    (run,) = world.runs()
    assert (run["id"], run["status"]) == (summary["run_id"], "succeeded")
    rows = world.run_rows(run["id"])
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert len(rows) == total
    return run


def test_redis_restarted_mid_run(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Redis restarted mid-run",
        "redis-server stopped (SIGTERM; append-only file kept) for 3 s, then started again, "
        "while 32 datasets migrate on 3 worker slots",
    )
    # An outage shorter than the lock TTL is waited out by everything that takes a lock.
    world.configure(DATASET_LOCK_TTL_S=10)
    seeded = _seed(world)
    worker = world.start_worker(concurrency=3)
    hook = world.cli_popen("enqueue", "--trigger", "deploy", "--wait", "--timeout", "120", "--json")
    wait_until(lambda: any((world.root / "probes").glob("*/entered")), 30, "a dataset in flight")

    world.redis.restart(down_s=3)
    restarted_at = time.monotonic()
    out, err = world.communicate(hook)

    lost = world.lost()
    scenario.lost = len(lost)
    assert hook.returncode == 0, err
    _one_succeeded_run(world, out, len(seeded))
    assert lost == []
    assert world.at_head() == []
    log = worker.log()
    assert "consumer: Connection to broker lost" in log  # the fault reached the worker
    assert world.redis.starts == 2
    scenario.outcome = (
        f"run succeeded, {len(seeded)}/{len(seeded)} datasets at head; the worker reconnected "
        f"and the waiting deploy hook exited 0 {time.monotonic() - restarted_at:.0f} s after "
        "the restart"
    )


def test_control_plane_connections_cut_mid_run(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Control-plane connections dropped mid-run",
        "pg_terminate_backend on every connection to the control-plane database, 6 times "
        "0.4 s apart, while 32 datasets migrate on 3 worker slots",
    )
    seeded = _seed(world)
    worker = world.start_worker(concurrency=3)
    hook = world.cli_popen("enqueue", "--trigger", "deploy", "--wait", "--timeout", "120", "--json")
    wait_until(lambda: any((world.root / "probes").glob("*/entered")), 30, "a dataset in flight")

    cut = []
    for _ in range(6):
        cut.append(world.cut_control_plane())
        time.sleep(0.4)
    out, err = world.communicate(hook)

    lost = world.lost()
    scenario.lost = len(lost)
    assert sum(cut) >= 6, cut
    assert hook.returncode == 0, err
    _one_succeeded_run(world, out, len(seeded))
    assert lost == []
    assert world.at_head() == []
    retried = worker.log().count("Control-plane connection lost")
    scenario.outcome = (
        f"run succeeded, {len(seeded)}/{len(seeded)} at head; {sum(cut)} connections cut, "
        f"{retried} bookkeeping write(s) retried on a new connection"
    )
