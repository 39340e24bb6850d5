"""Hostile and bad input: every bad URL, provider, id or name gives a clear error for that
dataset or that command, and nothing reaches SQL; forged task messages and pickle payloads are
refused. The legitimate datasets beside them migrate, intact."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from migrator.constants import (
    QUEUE_NAME,
    TASK_MIGRATE_DATASET,
    TASK_MIGRATE_RUN,
    TASK_SCHEDULED_CHECK,
)
from migrator.datasets import add_dataset
from migrator.errors import MessageRefusedError, UsageError
from migrator.runs.request import RunRequest
from tests.faults.conftest import Scenario
from tests.faults.world import World
from worker import create_app

# Dozens of CLI starts in one test: under load (two pytest workers) well past 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HOSTILE_NAMES = [
    "Robert'); DROP TABLE datasets;--",
    'quote " and \\ backslash; semicolon',
    "données ✓ 日本語 🚀 ñ",
]
SQL_ATTACK = "'; DROP TABLE datasets; --"


def _cli_error(world: World, *args: str) -> tuple[int, str, str]:
    result = world.cli(*args)
    return result.returncode, result.stdout, result.stderr.strip()


def test_bad_urls_providers_ids_and_names(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Hostile and bad input (CLI and registry)",
        "malformed and credential-bearing URLs, unknown providers, non-UUID and unknown ids, "
        "names with quotes/semicolons/NUL/non-ASCII, rows planted by hand with all of these",
    )
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 3) + world.add_lancedb(1)
    refusals: list[tuple[tuple[str, ...], int, str]] = [
        (
            ("datasets", "add", "a", "--provider", "pgvector", "--url", "postgresql://h:port/db"),
            64,
            "FAILED: pgvector URL is malformed (check the host and port): "
            "postgresql://host:port/dbname",
        ),
        (
            ("datasets", "add", "a", "--provider", "pgvector", "--url", "mysql://h/db"),
            64,
            "FAILED: pgvector URL must look like postgresql://host:port/dbname; got scheme 'mysql'",
        ),
        (
            (
                "datasets",
                "add",
                "a",
                "--provider",
                "pgvector",
                "--url",
                "postgresql://h/vectors?options=-c%20search_path%3Devil",
            ),
            64,
            "FAILED: pgvector URL has unsupported parts ['options']; allowed query parameters: "
            "host, sslmode",
        ),
        (
            (
                "datasets",
                "add",
                "a",
                "--provider",
                "pgvector",
                "--url",
                "postgresql://intruder:Hunter2-secret@h/vectors",
            ),
            64,
            "FAILED: pgvector URL must not carry credentials: remove 'user:password@' from it "
            "and set VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment",
        ),
        (
            ("datasets", "add", "a", "--url", "s3://bucket/vectors"),
            64,
            "FAILED: dataset 'a': lancedb location s3://bucket/vectors is outside "
            "VECTOR_STORE_ROOTS (no object-store prefix)",
        ),
        (
            ("datasets", "add", "a", "--url", "s3://AKIAX:Hunter2-secret@bucket/vectors"),
            64,
            "FAILED: lancedb URL s3://... carries user info; credentials come from settings or "
            "the store's environment, never from a dataset URL",
        ),
        (
            ("datasets", "add", "a", "--provider", "qdrant", "--url", "http://h"),
            64,
            "FAILED: unknown vector provider 'qdrant'; registered: lancedb, pgvector",
        ),
        (
            ("datasets", "add", "bell\x07and\x1b[31mescape"),
            64,
            "FAILED: dataset name contains control character(s) ['\\x07', '\\x1b']",
        ),
        (
            ("enqueue", "--dataset", "not-a-uuid"),
            64,
            "FAILED: no dataset with id or name 'not-a-uuid'",
        ),
        (
            ("enqueue", "--dataset", SQL_ATTACK),
            64,
            f"FAILED: no dataset with id or name {SQL_ATTACK!r}",
        ),
        (
            ("run", "--dataset", "00000000-0000-4000-8000-00000000dead"),
            64,
            "FAILED: unknown dataset id(s): 00000000-0000-4000-8000-00000000dead",
        ),
        (
            ("enqueue", "--retry-failed", SQL_ATTACK),
            64,
            f"FAILED: no migration run with id {SQL_ATTACK!r}",
        ),
        (
            ("status", SQL_ATTACK),
            64,
            f"FAILED: no migration run with id {SQL_ATTACK!r}",
        ),
        (
            ("datasets", "remove", SQL_ATTACK),
            64,
            f"FAILED: no dataset with id or name {SQL_ATTACK!r}",
        ),
    ]
    for args, code, message in refusals:
        assert _cli_error(world, *args) == (code, "", message), args
    assert "Hunter2-secret" not in "\n".join(world.outputs)

    # Names nobody should have to escape by hand: stored and listed back byte for byte.
    for name in HOSTILE_NAMES:
        added = world.cli("datasets", "add", name, "--json")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["name"] == name
    listed = {d["name"] for d in json.loads(world.cli("datasets", "list", "--json").stdout)}
    assert set(HOSTILE_NAMES) <= listed
    with pytest.raises(UsageError) as refused:
        world.run(lambda e: add_dataset(e, world.settings, name="nul\x00byte", provider="lancedb"))
    assert str(refused.value) == "dataset name contains control character(s) ['\\x00']"

    # Rows planted by hand (an old release, an edit, a removed plugin): each fails alone.
    planted = {
        world.insert_raw("planted-bad-port", "pgvector", "postgresql://h:port/vectors"): (
            "open",
            "BadDatasetURLError: pgvector URL is malformed (check the host and port): "
            "postgresql://host:port/dbname",
        ),
        world.insert_raw("planted-provider", "qdrant", "qdrant://h/x"): (
            "open",
            "UnknownProviderError: unknown vector provider 'qdrant'; registered: lancedb, pgvector",
        ),
        world.insert_raw(
            "planted-sql-in-dbname", "pgvector", f"{server.url('vectors')}{SQL_ATTACK}"
        ): (
            "connect",
            f"VectorDatabaseUnreachableError: cannot connect to pgvector server "
            f"127.0.0.1:{server.port} database {'vectors' + SQL_ATTACK!r} as 'postgres': "
            f'InvalidCatalogNameError: database "vectors{SQL_ATTACK}" does not exist',
        ),
    }
    run = world.cli("run", "--json", "--no-progress")

    lost = world.lost()
    scenario.lost = len(lost)
    assert run.returncode == 2, run.stderr
    summary = json.loads(run.stdout)
    outcomes = {d["dataset_id"]: d for d in summary["datasets"]}
    for dataset_id, (_step, error) in planted.items():
        assert (outcomes[dataset_id]["status"], outcomes[dataset_id]["error"]) == ("failed", error)
    assert {outcomes[d.id]["status"] for d in good} == {"succeeded"}
    names = [n for n in listed if n in HOSTILE_NAMES]
    assert sum(outcomes[i]["status"] == "succeeded" for i in _ids_named(world, names)) == 3
    assert len(world.run(_table_count)) == 4  # no table dropped
    assert lost == []
    scenario.outcome = (
        f"{len(refusals)} bad commands refused (exit 64, one FAILED line each, no password "
        f"echoed); 3 hostile names stored and listed verbatim, NUL refused; {len(planted)} "
        "planted rows failed alone at open/connect; the other 7 datasets migrated"
    )


def _ids_named(world: World, names: list[str]) -> list[str]:
    rows = json.loads(world.cli("datasets", "list", "--json").stdout)
    return [r["id"] for r in rows if r["name"] in names]


async def _table_count(engine: Any) -> list[str]:
    import sqlalchemy as sa

    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    return [
        n
        for n in names
        if n in ("datasets", "dataset_databases", "migration_runs", "migration_run_datasets")
    ]


def test_ten_thousand_dataset_ids(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "A --dataset list of 10,000 ids",
        "`migrator enqueue` and `migrator run` given 10,000 --dataset ids: all unknown; "
        "9,999 registered and one unknown; one neither an id nor a name",
    )
    registered = world.add_probes("many", 9_999)
    unknown = [str(uuid.uuid4()) for _ in range(10_000)]
    stray = "00000000-0000-4000-8000-0000000b0a7d"
    timings = []

    def refused(*args: str) -> tuple[int, str]:
        started = time.monotonic()
        result = world.cli(*args, timeout_s=120)
        timings.append(time.monotonic() - started)
        return result.returncode, result.stderr.strip()

    ids = [a for i in unknown for a in ("--dataset", i)]
    assert refused("enqueue", *ids) == (
        64,
        f"FAILED: unknown dataset id(s): {', '.join(unknown[:5])} and 9995 more",
    )
    ids = [a for d in registered for a in ("--dataset", d.id)] + ["--dataset", stray]
    assert refused("enqueue", "--wait", *ids) == (64, f"FAILED: unknown dataset id(s): {stray}")
    ids[-1] = "ffffffff-not-a-uuid"
    assert refused("run", *ids) == (
        64,
        "FAILED: no dataset with id or name 'ffffffff-not-a-uuid'",
    )

    client = world.redis_client()
    queued = client.llen(QUEUE_NAME)
    client.close()
    scenario.lost = len(world.lost())
    assert queued == 0  # nothing was sent
    assert world.runs() == []  # nothing was recorded
    assert max(timings) < 60
    scenario.outcome = (
        "each command refused with one FAILED line naming the ids (exit 64); nothing sent, "
        f"nothing recorded; slowest {max(timings):.1f} s"
    )


class _Detonator:
    """What a pickle payload could do, were it ever loaded: leave a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_forged_task_messages_and_pickle_are_refused(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Forged task messages and a pickle payload",
        "messages sent straight to Redis: subtask with an extra path argument, subtask and "
        "parent with a url keyword, a parent with an unknown trigger, a subtask for a run it "
        "is not part of, a pickle payload that would run a command",
    )
    server = world.vector_server("vectors-1")
    target = world.add_pgvector(server, 1)[0]
    worker = world.start_worker()
    sender = create_app(world.settings)
    marker = world.root / "pickle-ran"
    forged_run = str(uuid.uuid4())
    evil_url = f"postgresql://postgres:{world.vector_cluster.password}@127.0.0.1:1/evil"
    sent = {
        "extra path": sender.send_task(
            TASK_MIGRATE_DATASET, args=(forged_run, target.id, "/etc/passwd")
        ),
        "url keyword": sender.send_task(
            TASK_MIGRATE_DATASET, args=(forged_run, target.id), kwargs={"url": evil_url}
        ),
        "parent url": sender.send_task(
            TASK_MIGRATE_RUN, args=(forged_run,), kwargs={"trigger": "deploy", "url": evil_url}
        ),
        "parent trigger": sender.send_task(
            TASK_MIGRATE_RUN, args=(forged_run,), kwargs={"trigger": "'; DROP TABLE x; --"}
        ),
        "not in run": sender.send_task(TASK_MIGRATE_DATASET, args=(forged_run, target.id)),
    }
    pickled = create_app(world.settings)
    pickled.conf.task_serializer = "pickle"
    pickled.send_task(TASK_SCHEDULED_CHECK, args=(_Detonator(marker),), serializer="pickle")
    results = {name: r.get(timeout=60, propagate=False) for name, r in sent.items()}
    states = {name: r.state for name, r in sent.items()}
    sender.close()
    pickled.close()
    worker.wait_for_log(r"Refusing to deserialize untrusted content of type pickle")

    scenario.lost = len(world.lost())
    assert states == {
        "extra path": "FAILURE",
        "url keyword": "FAILURE",
        "parent url": "FAILURE",
        "parent trigger": "FAILURE",
        "not in run": "SUCCESS",
    }
    assert str(results["extra path"]) == (
        "migrate_dataset() takes 2 positional arguments but 3 were given"
    )
    assert str(results["url keyword"]) == (
        "migrate_dataset() got an unexpected keyword argument 'url'"
    )
    assert isinstance(results["parent url"], MessageRefusedError)
    assert str(results["parent url"]) == "task message refused: unexpected field(s) 'url'"
    assert str(results["parent trigger"]) == (
        "task message refused: fields must be: trigger one of deploy, beat, admin, api; ids "
        "as strings; verify and downgrade booleans"
    )
    assert results["not in run"] == {
        "dataset_id": target.id,
        "status": "failed",
        "duration_ms": 0,
        "error": f"RunNotFoundError: dataset {target.id} is not part of run {forged_run}",
    }
    assert not marker.exists()
    assert world.runs() == []
    assert world.cached_versions()[target.id] == 1  # untouched
    assert "Scheduled check:" not in worker.log()
    assert scenario.lost == 0
    scenario.outcome = (
        "4 forged messages failed before any work (TypeError / MessageRefusedError), 1 "
        "refused as not part of the run; pickle refused unread (its command never ran); no "
        "run recorded, the dataset untouched"
    )


def test_message_refusal_names_fields_not_values() -> None:
    with pytest.raises(MessageRefusedError) as refused:
        RunRequest.from_message(
            "r", {"trigger": "deploy", "path": "/etc/shadow", "url": "postgresql://u:pw@h/d"}
        )
    assert str(refused.value) == "task message refused: unexpected field(s) 'path', 'url'"
