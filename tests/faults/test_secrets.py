"""Passwords — in DATABASE_URL, in dataset URLs, in the Redis URL, and VECTOR_DB_PASSWORD —
never appear in logs (DEBUG included), run records, task results or CLI output.

Every password here is a real one: the control plane and the pgvector servers refuse a login
without it, and so does Redis. The world's teardown searches everything it wrote for its three;
this test adds failures that are most tempted to print a URL, and a dataset URL planted with a
password of its own.
"""

from __future__ import annotations

import json

import pytest

from migrator.urls import MASK
from tests.faults.conftest import Scenario, secret
from tests.faults.world import World

# Dozens of CLI starts in one test: under load (two pytest workers) well past 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_passwords_never_written_anywhere(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Passwords never written",
        "DEBUG everywhere; control plane, pgvector servers and Redis all password-protected; "
        "a dataset URL planted with a password; failures at every connection",
    )
    world.configure(LOG_LEVEL="DEBUG")
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 3) + world.add_lancedb(1)
    url_password = secret("Url")
    planted = world.insert_raw(
        "planted-credentials",
        "pgvector",
        f"postgresql://postgres:{url_password}@127.0.0.1:{server.port}/vectors",
    )
    worker = world.start_worker(LOG_LEVEL="DEBUG")
    world.start_beat(LOG_LEVEL="DEBUG", MIGRATION_CHECK_INTERVAL_S=1)

    deploy = world.cli("enqueue", "--trigger", "deploy", "--wait", "--timeout", "120", "--json")
    run_id = json.loads(deploy.stdout)["run_id"]
    commands = [
        ("status", run_id, "--json"),
        ("status", run_id),
        ("runs", "--json"),
        ("runs",),
        ("datasets", "list"),
        ("datasets", "list", "--json"),
        ("check", "--json"),
        ("run", "--json", "--no-progress"),
        ("enqueue", "--retry-failed", run_id, "--wait", "--timeout", "120"),
    ]
    for args in commands:
        world.cli(*args)
    wrong_control_password = world.core.dsn(world.control_database).replace(
        world.core.password, world.core.password[::-1]
    )
    refused_logins = [
        world.cli("run", "--no-progress", DATABASE_URL=wrong_control_password),
        world.cli("status", DATABASE_URL=world.core.dsn("no_such_database")),
        world.cli("enqueue", "--wait", REDIS_URL=world.redis.url().replace("@", "x@")),
        world.cli("run", "--no-progress", VECTOR_DB_PASSWORD="not-the-password"),
        world.cli(
            "datasets",
            "add",
            "again",
            "--provider",
            "pgvector",
            "--url",
            f"postgresql://postgres:{url_password}@127.0.0.1:{server.port}/vectors",
        ),
    ]
    worker.wait_for_log(r"Scheduled check: control plane")

    scenario.lost = len(world.lost(good))
    written = world.everything_written()
    assert deploy.returncode == 2, deploy.stderr
    rows = world.run_rows(run_id)
    assert rows[planted]["error"] == (
        "BadDatasetURLError: pgvector URL must not carry credentials: remove 'user:password@' "
        "from it and set VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment"
    )
    assert {rows[d.id]["status"] for d in good} == {"succeeded"}
    assert [r.returncode for r in refused_logins] == [1, 1, 1, 2, 64]
    assert "password authentication failed" in refused_logins[0].stderr
    assert world.leaked() == []
    # The planted URL is in the registry row it was planted in, and nowhere else.
    registry = world.records_text()
    assert url_password not in written.replace(registry, "")
    assert url_password not in world.cli("datasets", "list").stdout
    assert MASK in world.cli("datasets", "list").stdout
    assert scenario.lost == 0
    scenario.outcome = (
        f"{len(commands) + len(refused_logins) + 1} CLI calls, worker and beat at DEBUG, run "
        "records and every Redis key searched: no password anywhere (the planted dataset "
        "failed with a message that does not repeat its URL)"
    )
