"""A server that completes the login and then never answers fails the step, naming the server,
within QUERY_TIMEOUT_S: the control plane (every command) and a pgvector dataset server (that
dataset alone)."""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import Scenario
from tests.faults.fake_pg import StallingProxy
from tests.faults.world import World

pytestmark = pytest.mark.slow

QUERY_TIMEOUT_S = 2


def test_stalled_servers_fail_within_the_query_timeout(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Servers that log in and never answer",
        "a proxy in front of the control plane, then in front of one pgvector server, stops "
        "forwarding the server's replies after login",
    )
    world.configure(QUERY_TIMEOUT_S=QUERY_TIMEOUT_S, CONNECT_TIMEOUT_S=15)
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 2) + world.add_lancedb(1)

    control = StallingProxy(world.core.port)
    stalled_dataset = StallingProxy(server.port)
    try:
        stalled_url = world.core.dsn(world.control_database).replace(
            f":{world.core.port}/", f":{control.port}/"
        )
        timings = {}
        for args in (("status",), ("run", "--no-progress"), ("datasets", "list")):
            started = time.monotonic()
            result = world.cli(*args, DATABASE_URL=stalled_url, timeout_s=60)
            timings[args[0]] = time.monotonic() - started
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert result.stderr.strip().endswith(
                f"FAILED: control plane 127.0.0.1:{control.port} did not answer within "
                f"QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
            ), (args, result.stderr)
        assert control.stalled.is_set()
        # Start-up and one bounded query, with room for a loaded machine.
        assert max(timings.values()) < QUERY_TIMEOUT_S + 10, timings

        planted = world.insert_raw(
            "stalled", "pgvector", f"postgresql://127.0.0.1:{stalled_dataset.port}/vectors"
        )
        started = time.monotonic()
        result = world.cli("run", "--json", "--no-progress")
        elapsed_s = time.monotonic() - started
    finally:
        control.close()
        stalled_dataset.close()
    assert result.returncode == 2, result.stderr
    outcomes = {d["dataset_id"]: d for d in json.loads(result.stdout)["datasets"]}
    assert outcomes[planted]["status"] == "failed"
    assert outcomes[planted]["error"] == (
        f"QueryTimeoutError: pgvector server 127.0.0.1:{stalled_dataset.port} database "
        f"'vectors' did not answer within QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
    )
    assert elapsed_s < QUERY_TIMEOUT_S + 20
    for dataset in good:
        assert outcomes[dataset.id]["status"] == "succeeded", outcomes[dataset.id]
    scenario.lost = len(world.lost(good))
    scenario.outcome = (
        f"status/run/datasets list failed naming the control plane in {max(timings.values()):.1f}s "
        f"at most; the stalled dataset failed alone (QueryTimeoutError), others at head"
    )
    assert scenario.lost == 0
