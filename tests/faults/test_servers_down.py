"""One dataset server down for the whole run, another that comes back during it.

Subtasks run one at a time, in dataset-id order (the ids are chosen so the order is known):
the down server's datasets, then the other server's "early" ones (tried while it is still
down), then a probe that holds the run for a few seconds while that server is started again,
then its "late" ones and the steady server's. Each unreachable dataset fails alone, with a
message naming the server; the others migrate; ``--retry-failed`` and a later run finish the
rest once their servers are up. Nothing is lost on any of them.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import Scenario
from tests.faults.world import World, ordered_id
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

WAIT = ("--wait", "--timeout", "120", "--json")


def _unreachable(port: int) -> str:
    return (
        f"VectorDatabaseUnreachableError: cannot connect to pgvector server 127.0.0.1:{port} "
        "database 'vectors' as 'postgres': ConnectionRefusedError: "
    )


def test_one_server_down_all_run_and_one_back_mid_run(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Dataset servers down",
        "server A stopped for the whole run; server B stopped at the start and started again "
        "mid-run (3 + 4 of 12 datasets on them)",
    )
    down, back, steady = (
        world.vector_server(n) for n in ("down-all-run", "back-mid-run", "steady")
    )
    on_down = world.add_pgvector(down, 3, prefix="down", id_prefix=0x10)
    early = world.add_pgvector(back, 2, prefix="back-early", id_prefix=0x20)
    hold = world.add_probe("hold", dataset_id=ordered_id(0x30, 0), sleep_s=4)
    late = world.add_pgvector(back, 2, prefix="back-late", id_prefix=0x40)
    on_steady = world.add_pgvector(steady, 4, prefix="steady", id_prefix=0x50)
    down.stop()
    back.stop()
    world.start_worker(concurrency=1)

    hook = world.cli_popen("enqueue", "--trigger", "deploy", *WAIT)
    wait_until(lambda: (world.probe_dir(hold) / "entered").exists(), 60, "the hold probe")
    back.start()
    out, err = world.communicate(hook)

    assert hook.returncode == 2, err
    first = json.loads(out)
    rows = world.run_rows(first["run_id"])
    for dataset in on_down:
        assert rows[dataset.id]["error"].startswith(_unreachable(down.port))
    for dataset in early:
        assert rows[dataset.id]["error"].startswith(_unreachable(back.port))
    assert {rows[d.id]["status"] for d in on_down + early} == {"failed"}
    assert {rows[d.id]["status"] for d in [hold, *late, *on_steady]} == {"succeeded"}
    assert (first["status"], first["counts"]["failed"]) == ("partial", len(on_down + early))

    retry = world.cli("enqueue", "--retry-failed", first["run_id"], *WAIT)
    assert retry.returncode == 2, retry.stderr
    retried = world.run_rows(json.loads(retry.stdout)["run_id"])
    assert set(retried) == {d.id for d in on_down + early}
    assert {retried[d.id]["status"] for d in early} == {"succeeded"}
    assert {retried[d.id]["status"] for d in on_down} == {"failed"}

    down.start()
    started = time.monotonic()
    final = world.cli("enqueue", "--trigger", "deploy", *WAIT)

    lost = world.lost()
    scenario.lost = len(lost)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["counts"]["succeeded"] == len(on_down)
    assert lost == []
    assert world.at_head() == []
    scenario.outcome = (
        f"run 1 partial: {len(on_down)} on A and {len(early)} tried on B before it was back "
        f"failed (VectorDatabaseUnreachableError naming the server), {len(late)} on B after "
        f"it was back and {len(on_steady)} on the steady server succeeded; --retry-failed "
        f"finished B's; A's migrated {time.monotonic() - started:.0f} s after A came back"
    )
